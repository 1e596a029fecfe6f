// What a node measures about itself before joining the swarm (its throughput, the memory its
// blocks need, the memory it has), and the Announcer that keeps its record in the directory.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "base/result.h"
#include "model/model.h"
#include "store/manifest.h"
#include "net/identity.h"
#include "swarm/assignment.h"
#include "swarm/directory.h"
#include "swarm/provider_record.h"

namespace omni::swarm {

// Bytes of each block's tensors ("blk.N.*") and of the token embeddings, from the GGUF index.
ModelFootprint footprint_of(const model::Model& model);
// The same from a model's manifest (its shards' sizes), before any shard is fetched.
ModelFootprint footprint_of(const store::Manifest& manifest);

// Tokens/s through one block: single-token forwards through block 0 on `threads` threads (what
// decoding does), timed for about `budget_ms`. Errors: the session cannot be made.
Result<double> measure_block_tps(const model::Model& model, int threads, uint32_t budget_ms = 300);

// MemAvailable from /proc/meminfo, or 0 when unknown.
uint64_t available_memory_bytes();

// Publishes a signed record now and then every `interval_s` from a thread of its own, each time with
// a fresh validity of `ttl_s` and a higher seq: a node record (the record's free session count is
// what the node had at start; clients read the live count when they probe), or a provider record
// (provider_record.h). Stops (and joins) on destruction.
class Announcer {
 public:
  // Signs and puts one announcement with these validity bounds and sequence number.
  using Publish = std::function<Result<void>(int64_t issued_ms, int64_t expires_ms, uint64_t seq)>;
  // `seq`: the last sequence number used (the next is above it and the clock, see next_seq).
  Announcer(Publish publish, uint64_t seq, uint32_t interval_s, uint32_t ttl_s,
            std::function<void(const std::string&)> log);
  Announcer(Directory& directory, net::Identity identity, NodeRecord record, uint32_t interval_s, uint32_t ttl_s,
            std::function<void(const std::string&)> log);
  Announcer(Directory& directory, net::Identity identity, ProviderRecord record, uint32_t interval_s,
            uint32_t ttl_s, std::function<void(const std::string&)> log);
  ~Announcer();
  // The first announcement, synchronously, then starts the refresh thread. A failed first
  // announcement (no DHT peer reachable yet, e.g. the first node of a LAN swarm) is returned for the
  // caller to report, and the refresh thread still starts: it retries every `kRetryS` seconds until
  // an announcement succeeds, then refreshes every interval.
  Result<void> start();
  // Publishes again now, from the refresh thread, instead of at the next interval (what it
  // publishes changed). Returns at once.
  void announce_now();
  static constexpr uint32_t kRetryS = 1;

 private:
  Result<void> announce_once();
  void loop(uint32_t failures);  // failures: consecutive failed announcements so far

  Publish publish_;
  uint64_t seq_;
  uint32_t interval_s_, ttl_s_;
  std::function<void(const std::string&)> log_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool poked_ = false;
  std::thread thread_;
};

}  // namespace omni::swarm
