// A node's membership in the swarm (`omni node --bootstrap ...`): joins the DHT, picks its blocks
// when none are given (memory planner + assignment.h), measures its throughput, and once the node
// listens keeps its signed record in the directory (Announcer).
//
// Also `omni node --bootstrap-only`: a DHT node that only helps others find each other.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "swarm/dht_directory.h"
#include "swarm/node_profile.h"

namespace omni::swarm {

struct JoinOptions {
  std::vector<std::string> bootstrap;  // DHT nodes "HOST:PORT"
  uint16_t dht_port = 0;
  bool lan = false;
  bool bootstrap_only = false;
  uint32_t max_blocks = 0;             // 0: as many as memory allows
  uint64_t max_memory_mib = 0;         // 0: MemAvailable
  uint32_t announce_interval_s = 10;
  uint32_t record_ttl_s = 30;
  std::string announce_host;           // host clients reach; default: the listen host (127.0.0.1 for 0.0.0.0)

  bool joins() const { return !bootstrap.empty() || lan; }
};

class Membership {
 public:
  // Joins the DHT and settles the blocks: `blocks` "A:B" as given, or chosen when empty. The model
  // must be a GGUF file (a model CID needs --blocks, and is not supported with --bootstrap yet).
  // `log` gets progress lines. Errors: DHT start, model load, memory refusal, directory lookup.
  static Result<std::unique_ptr<Membership>> join(const JoinOptions& options, const std::string& model_path,
                                                  const std::string& blocks, uint64_t kv_bytes, int threads,
                                                  const std::string& data_dir,
                                                  std::function<void(const std::string&)> log);
  ~Membership();

  uint32_t block_begin() const { return record_.block_begin; }
  uint32_t block_end() const { return record_.block_end; }
  // Publishes the record with the node's bound "host:port" and starts refreshing it.
  Result<void> announce(const std::string& listen_address, uint32_t max_sessions);
  // The same with these addresses, first preferred ("host:port", or "relay:host:port" for a node
  // reached through a relay). Called again (a relay's address changed), the new record replaces
  // the old one at once (a higher sequence number). Blocks for the first DHT put.
  Result<void> announce_addresses(std::vector<std::string> addresses, uint32_t max_sessions);
  // Where clients reach a node bound to `listen_address`: --announce-host's host if given, else the
  // listen host (127.0.0.1 for a wildcard host).
  std::string reachable_address(const std::string& listen_address) const;

 private:
  Membership() = default;
  JoinOptions options_;
  std::unique_ptr<DhtDirectory> directory_;
  std::unique_ptr<net::Identity> identity_;
  NodeRecord record_;
  std::function<void(const std::string&)> log_;
  std::unique_ptr<Announcer> announcer_;
};

// Runs a bootstrap-only DHT node on `listen` ("HOST:PORT", UDP) until the process is killed. Prints
// "omni node: bootstrap DHT node listening on udp HOST:PORT". Returns an exit code.
int run_bootstrap_node(const std::string& listen, const JoinOptions& options);

}  // namespace omni::swarm
