// The swarm as the dashboard sees it (GET /v1/swarm): the nodes, which blocks of which model each
// serves, how many replicas cover each block, and the gateway's measured throughput over time.
//
// The engine backend fills nodes and models (a local backend reports itself as one node serving
// every block; a swarm backend reports the directory's nodes as its probes found them:
// swarm_watch.h); the gateway adds the throughput it measured. JSON shape:
//   {"nodes": [{"peer_id", "address", "model", "blocks": [a, b], "throughput_tps", "sessions",
//               "max_sessions", "route": "direct"|"relay"|"local", "alive", "rtt_ms",
//               "reputation": score in [0, 1] (this gateway's, swarm/reputation.h),
//               "excluded": null | {"reason", "since": unix seconds}}],
//    "models": [{"name", "cid", "n_layer", "coverage": [replicas of block 0, 1, ...],
//                "missing": [blocks nobody alive serves]}],
//    "throughput_history": [{"t": unix seconds, "tps": tokens/s}], "updated_at": unix seconds}
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace omni::gateway {

struct SwarmNode {
  std::string peer_id;
  std::string address;
  std::string model;
  uint32_t block_begin = 0, block_end = 0;  // serves blocks [block_begin, block_end)
  double throughput_tps = 0;
  size_t sessions = 0;
  size_t max_sessions = 0;   // 0: unknown
  std::string route = "local";  // "direct", "relay" (reached through a relay) or "local" (this process)
  bool alive = true;         // answered the last probe; only live nodes count for coverage
  double rtt_ms = 0;         // of that probe
  double reputation = 1;     // the gateway's score of the node (swarm/reputation.h)
  std::string excluded_reason = {};  // empty: not excluded
  int64_t excluded_since = 0;   // unix seconds
};

struct SwarmModel {
  std::string name;
  std::string cid;                 // its identity: the manifest CID of its content (net/node_info.h)
  bool shared = false;             // some node serves its shards from a store (fetchable by cid)
  uint32_t n_layer = 0;
  std::vector<uint32_t> coverage;  // per block: how many live nodes serve it
  std::vector<uint32_t> missing() const;  // the blocks of coverage 0
};

// "blocks 3-5 and 9" for {3, 4, 5, 9}: how messages name missing blocks.
std::string describe_blocks(const std::vector<uint32_t>& blocks);

struct SwarmSnapshot {
  std::vector<SwarmNode> nodes;
  std::vector<SwarmModel> models;
};

// Fills each model's coverage from the live nodes that serve it.
void compute_coverage(SwarmSnapshot& snapshot);

// Generated tokens per second, measured in one-second buckets. Keeps the last `seconds_kept`
// seconds; history() averages them into points of `point_seconds` each. Thread-safe.
class ThroughputHistory {
 public:
  using Clock = std::chrono::system_clock;
  // History starts at `start`: no points are invented for the time before it.
  explicit ThroughputHistory(size_t seconds_kept = 600, Clock::time_point start = Clock::now());

  void record(uint64_t tokens, Clock::time_point now = Clock::now());
  // Mean tokens/s over the `window_s` whole seconds before `now`'s second.
  double tokens_per_second(int window_s = 10, Clock::time_point now = Clock::now()) const;
  struct Point {
    int64_t unix_s;
    double tps;
  };
  std::vector<Point> history(int point_seconds = 5, Clock::time_point now = Clock::now()) const;

 private:
  void advance(int64_t second);  // under the lock

  size_t seconds_kept_;
  mutable std::mutex mutex_;
  std::deque<uint64_t> per_second_;  // tokens in each second, the last is `last_second_`
  int64_t last_second_ = 0;
  int64_t start_second_ = 0;
};

nlohmann::json to_json(const SwarmSnapshot& snapshot, const std::vector<ThroughputHistory::Point>& history);

}  // namespace omni::gateway
