// Directory: where nodes publish their signed records (record.h) and clients read them. The
// interface is deliberately small (announce, fetch) so the DHT stays behind it: DhtDirectory
// (dht_directory.h) for real swarms, MemoryDirectory for tests.
//
// A directory stores bytes and vouches for nothing: lookup() verifies every record, drops bad and
// expired ones (counting them), and keeps the newest record of each peer.
//
// Threads: implementations are safe to call from several threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "swarm/record.h"

namespace omni::swarm {

class Directory {
 public:
  virtual ~Directory() = default;
  // Publishes `signed_record` (from sign_record) under `model_id` and the swarm-wide list,
  // replacing the same peer's previous record. Errors: the directory cannot be reached.
  virtual Result<void> announce(const std::string& model_id, const std::string& peer_id,
                                std::vector<uint8_t> signed_record) = 0;
  // The raw values stored under `model_id`, or under the swarm-wide list when it is empty.
  virtual Result<std::vector<std::vector<uint8_t>>> fetch(const std::string& model_id) = 0;
  // Publishes a provider record (provider_record.h) under the model CID `model_cid` only,
  // replacing the same peer's previous one. Errors: the directory cannot be reached.
  virtual Result<void> provide(const std::string& model_cid, const std::string& peer_id,
                               std::vector<uint8_t> signed_record) = 0;
  // The raw values stored under the provider key of `model_cid`.
  virtual Result<std::vector<std::vector<uint8_t>>> fetch_providers(const std::string& model_cid) = 0;
};

struct Lookup {
  std::vector<NodeRecord> records;  // verified, unexpired, newest per peer, sorted by peer id
  size_t rejected = 0;              // values dropped (bad signature, malformed, expired, foreign model)
  std::vector<std::string> reasons; // why, one per rejected value (first few)
};

// Fetches and verifies. `model_id` empty: every model's records.
Result<Lookup> lookup(Directory& directory, const std::string& model_id, int64_t now_ms = unix_now_ms());

// Records gathered over several lookups: each peer's newest (supersedes()) is kept in `seen` until
// it expires. A DHT read often returns only part of what is stored, and a record one read misses
// must not look like a gap in the swarm.
void keep_newest(std::map<std::string, NodeRecord>& seen, std::vector<NodeRecord> read,
                 int64_t now_ms = unix_now_ms());

// Everything in memory, keyed as the DHT is (tests; one process).
class MemoryDirectory final : public Directory {
 public:
  Result<void> announce(const std::string& model_id, const std::string& peer_id,
                        std::vector<uint8_t> signed_record) override;
  Result<std::vector<std::vector<uint8_t>>> fetch(const std::string& model_id) override;
  Result<void> provide(const std::string& model_cid, const std::string& peer_id,
                       std::vector<uint8_t> signed_record) override;
  Result<std::vector<std::vector<uint8_t>>> fetch_providers(const std::string& model_cid) override;
  // Tests: stores raw bytes as if some peer had put them (a forgery, a replay).
  void inject(const std::string& model_id, const std::string& slot, std::vector<uint8_t> bytes);

 private:
  std::mutex mutex_;
  std::map<std::string, std::map<std::string, std::vector<uint8_t>>> values_;     // key -> slot -> bytes
  std::map<std::string, std::map<std::string, std::vector<uint8_t>>> providers_;  // model CID -> peer -> bytes
};

}  // namespace omni::swarm
