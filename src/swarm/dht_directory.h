// DhtDirectory: the Directory on OpenDHT (a Kademlia DHT over UDP). Records live under the key
// sha1("omni/v1/model/<model id>") and, for `omni swarm status`, under sha1("omni/v1/nodes"); each
// refresh is a new value (OpenDHT's replace-by-id path timed out in tests), the old ones expire.
// Provider records (provider_record.h) live under sha1("omni/v1/providers/<model CID>").
//
// Stored values use a value type registered by every omni process (so every DHT node applies the
// same rules): it expires after `record_ttl_s` unless refreshed, and a DHT node stores or replaces a
// value only when it verifies as a node record (record.h) and, on replacement, comes from the same
// peer. Readers verify again (lookup()): a DHT node run by someone else need not apply these rules.
//
// OpenDHT runs its own threads; the runner is joined when the directory is destroyed. OpenDHT's
// exceptions are caught here and returned as Errors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "swarm/directory.h"

namespace omni::swarm {

struct DhtOptions {
  std::string bind_host;               // empty: all addresses (IPv4 and IPv6); else that address only
  uint16_t port = 0;                   // UDP port; 0: any free one
  std::vector<std::string> bootstrap;  // "HOST:PORT" of DHT nodes to join through
  bool lan = false;                    // OpenDHT multicast peer discovery/publication on the LAN
  uint32_t record_ttl_s = 60;          // how long stored values live without a refresh
  // Our own value type (TTL = record_ttl_s, store/edit policies that verify records). Off by
  // default: with it, puts to a DHT of more than two nodes timed out on loopback (OpenDHT 2.4.12),
  // so values use OpenDHT's default type (10 min expiry) and readers drop expired records.
  bool custom_type = false;
  uint32_t timeout_ms = 3000;          // per put; a get returns what it found by then
};

class DhtDirectory final : public Directory {
 public:
  // Starts the DHT node and, when bootstrap addresses are given, joins through them. Errors: the
  // port cannot be bound, a bootstrap address does not parse.
  static Result<std::unique_ptr<DhtDirectory>> start(const DhtOptions& options);
  ~DhtDirectory() override;

  uint16_t bound_port() const;
  // Known DHT nodes (IPv4 + IPv6) as OpenDHT counts them, good ones only.
  size_t good_nodes() const;

  Result<void> announce(const std::string& model_id, const std::string& peer_id,
                        std::vector<uint8_t> signed_record) override;
  Result<std::vector<std::vector<uint8_t>>> fetch(const std::string& model_id) override;
  Result<void> provide(const std::string& model_cid, const std::string& peer_id,
                       std::vector<uint8_t> signed_record) override;
  Result<std::vector<std::vector<uint8_t>>> fetch_providers(const std::string& model_cid) override;

  struct Impl;

 private:
  explicit DhtDirectory(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace omni::swarm
