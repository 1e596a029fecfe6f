// Reputation: what this process has seen of each peer (node) of the swarm, kept in SQLite in its
// data directory (`<dir>/reputation.sqlite`, WAL), and the score routing and block assignment
// weight peers by (routing.h, assignment.h). A client, a gateway and a node each keep their own:
// a peer's reputation is never taken from anyone else's word.
//
// What counts (PeerEvent): probes answered or not (uptime; a node that dies under a session fails
// the probe of the failover's next opening), sessions served, calls that stalled (the stall watch's
// timeouts), spot checks passed, and measured speed against the throughput the peer's record claims. A peer caught lying (a verified fault, or a call whose
// output is proven wrong) is excluded with the reason and the time: excluded peers score 0 and are
// never routed to nor counted as a replica, until pardon() (a person's decision).
//
// Score, in [0, 1] (docs/design.md, "Reputation"): reliability × speed, where
//   reliability = (good + kPriorGood) / (good + bad + kPriorGood), good and bad being weighted event
//   counts that halve every half_life_s (an old failure fades, a new peer starts at 1: prior only),
//   speed = the running mean of measured / claimed throughput, clamped to [kMinSpeed, 1] (a peer
//   faster than it claims gains nothing: claims are only a prior).
//
// Bounds: at most max_peers rows; past that, the peer seen least recently is forgotten (excluded
// peers are forgotten last). Reasons are cut to kMaxReasonBytes. So a swarm of Sybil ids can make
// the store forget old peers, never grow without bound.
//
// Failures: a file that is not a reputation store (corrupt, another format) is moved aside to
// `reputation.sqlite.corrupt` and a fresh store started (recovered() says so): reputation is
// advisory, losing it must not stop a client. A write that fails (disk full) keeps the event in
// memory and returns the error (callers log it). Thread-safe: one store is shared by all sessions
// of a gateway; several processes may open the same file (each keeps its own view in memory and
// writes through, so the last writer's row wins).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace omni::swarm {

enum class PeerEvent {
  Answered,     // answered a probe (uptime)
  Unreachable,  // a probe failed: refused, timed out, wrong id
  Served,       // a session on it ended without its fault
  TimedOut,     // a call through it stalled past the watch's limit
  Verified,     // a spot check matched its output
};
const char* peer_event_name(PeerEvent event);

struct PeerReputation {
  std::string peer_id;
  double good = 0, bad = 0;   // decayed weighted counts, as of updated_s
  uint64_t answered = 0, unreachable = 0, served = 0, timed_out = 0, verified = 0;  // lifetime
  double speed = 1;           // running mean of measured / claimed throughput, clamped
  uint64_t speed_samples = 0;
  int64_t first_seen_s = 0, updated_s = 0;
  std::string excluded_reason;  // empty: not excluded
  int64_t excluded_since_s = 0;

  bool excluded() const { return !excluded_reason.empty(); }
  // Probes answered over probes made; 1 before any probe.
  double uptime() const;
  // The score at `now_s` (decay applied); 0 when excluded.
  double score(int64_t now_s, double half_life_s) const;
};

class ReputationStore {
 public:
  static constexpr const char* kFileName = "reputation.sqlite";
  static constexpr size_t kDefaultMaxPeers = 4096;
  static constexpr size_t kMaxReasonBytes = 512;
  static constexpr double kPriorGood = 4;
  static constexpr double kMinSpeed = 0.1;

  struct Options {
    size_t max_peers = kDefaultMaxPeers;
    double half_life_s = 86400;  // a day: yesterday's failures count half
  };

  // Opens or creates `<dir>/reputation.sqlite` (dir must exist); dir empty: memory only (a client
  // without a data directory). Errors: Unavailable when the file cannot be opened or created at all
  // (a directory that is not writable); a corrupt file is not an error (see above).
  static Result<std::shared_ptr<ReputationStore>> open(const std::string& dir, Options options);
  static Result<std::shared_ptr<ReputationStore>> open(const std::string& dir) { return open(dir, Options{}); }
  ~ReputationStore();
  ReputationStore(const ReputationStore&) = delete;
  ReputationStore& operator=(const ReputationStore&) = delete;

  // Why the file was replaced at open (what SQLite said), or empty.
  const std::string& recovered() const { return recovered_; }
  const std::string& path() const { return path_; }

  Result<void> record(const std::string& peer_id, PeerEvent event, int64_t now_s);
  // One measurement of the peer's speed: throughput measured by this process against its claim.
  // Ignored when either is not positive.
  Result<void> record_speed(const std::string& peer_id, double measured_tps, double claimed_tps, int64_t now_s);
  // The peer was found faulty (a verified fault report, a proven wrong output): excluded from now,
  // with `reason`. A peer excluded already keeps its first reason and time.
  Result<void> record_fault(const std::string& peer_id, const std::string& reason, int64_t now_s);
  // Lifts an exclusion and forgets the peer's history: it starts again from the prior.
  Result<void> pardon(const std::string& peer_id);

  // 1 for a peer never seen.
  double score(const std::string& peer_id, int64_t now_s) const;
  std::optional<PeerReputation> find(const std::string& peer_id) const;
  // Every peer kept, highest score first.
  std::vector<PeerReputation> peers(int64_t now_s) const;
  double half_life_s() const { return options_.half_life_s; }

 private:
  ReputationStore(void* db, std::string path, Options options) : db_(db), path_(std::move(path)), options_(options) {}
  // Under the lock: the peer's entry (created if new, evicting past max_peers) and its row written.
  PeerReputation& entry(const std::string& peer_id, int64_t now_s);
  Result<void> save(const PeerReputation& peer);
  Result<void> forget(const std::string& peer_id);
  void evict_one();

  void* db_;  // sqlite3*; null for a memory-only store
  std::string path_;
  Options options_;
  std::string recovered_;
  mutable std::mutex mutex_;
  std::map<std::string, PeerReputation> peers_;
};

int64_t unix_now_s();

}  // namespace omni::swarm
