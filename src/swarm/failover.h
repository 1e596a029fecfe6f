// FailoverPipeline: a Pipeline (src/net/pipeline.h) that survives the loss of nodes. It keeps every
// call made so far (the session's tokens, in the batches they were sent); when the inner pipeline
// fails, it drops it, asks `open` for a new one (which routes around dead nodes), replays the calls
// in the same batches to rebuild the KV caches on the new chain, and retries the failed call.
//
// Replaying the same batches makes the new caches bit-identical to the lost ones (batch shape
// changes rounding), so greedy output after a failover equals the output without one. Calls whose
// rows each have a one-token call's bits (generation steps; verification calls, forward_all, whose
// rows are summed per token) are replayed together, as few Pipeline::replay_steps() calls as the
// new chain's batch limit allows: a trip per max_batch() steps instead of one per token. Prompt
// batches are replayed as they were sent. Rolled-back positions (rejected drafts) are cut from the
// kept calls.
//
// What is retried: only failures that another chain, or the same one a moment later, may not have
// (is_retryable(): Unavailable, DeadlineExceeded, a node's ResourceExhausted). Any other code (an
// invalid request such as a batch over max_batch(), corrupt data, a bug) fails the call at once
// with its own code, before any backoff, and leaves the inner pipeline in place.
//
// Attempts: opening, replaying and retrying form one attempt; a retryable failure in it (a node
// dying while the chain is re-opened or replayed, a route through a dead node) starts the next one
// after a backoff (doubling from backoff_ms up to max_backoff_ms), at most max_attempts per failed
// call and for the first opening. Then the call fails with the attempts' history, ending with the
// last reason (e.g. "no node serves block 3"), and that reason's code.
//
// Single thread, like any Pipeline.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/pipeline.h"

namespace omni::swarm {

// Whether a failure with `code` may succeed on another chain or later.
bool is_retryable(ErrorCode code);

struct FailoverOptions {
  uint32_t max_attempts = 8;
  uint32_t backoff_ms = 100;      // before the second attempt
  uint32_t max_backoff_ms = 2000;
  std::function<void(const std::string&)> log;  // one line per failure and per recovery
};

// One survived failure of the inner pipeline.
struct FailoverEvent {
  std::string reason;      // why the call failed
  double detect_s = 0;     // from the failed call's start to its failure (a stall takes the stall timeout)
  double recovery_s = 0;   // from the failure to the retried call's success
  uint32_t attempts = 0;   // re-opens it took
  size_t replayed = 0;     // calls replayed on the last attempt
  double replay_s = 0;     // how long that replay took (the rest of recovery_s is routing and opening)
};

class FailoverPipeline final : public net::Pipeline {
 public:
  using Opener = std::function<Result<std::unique_ptr<net::Pipeline>>()>;

  // Opens the first inner pipeline now (with the same attempts and backoff).
  static Result<std::unique_ptr<FailoverPipeline>> create(Opener open, FailoverOptions options);

  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override;
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override;
  // Drops the positions from the kept calls too, so a replay rebuilds what the sessions hold.
  Result<void> rollback(uint32_t n) override;
  size_t max_batch() const override;
  std::string summary() const override;

  // Runs the last call again on a new route (the session replayed there without it), for when a
  // node of the route was caught returning wrong results: `why` is the reason in the log.
  // `logits` gets the new result. Errors: as forward(); no call made yet (InvalidArgument).
  Result<void> redo_last(std::vector<float>& logits, std::string why);

  uint32_t failovers() const { return static_cast<uint32_t>(events_.size()); }
  const std::vector<FailoverEvent>& events() const { return events_; }

 private:
  FailoverPipeline(Opener open, FailoverOptions options) : open_(std::move(open)), options_(std::move(options)) {}
  // A kept call: its tokens and whether it was a forward_all (whose rows are summed per token, so
  // the replay must be one too for the caches to get the same bits).
  struct Call {
    std::vector<int32_t> tokens;
    bool all_rows = false;
  };
  Result<void> call(std::span<const int32_t> tokens, bool all_rows, std::vector<float>& logits);
  Result<void> open_and_replay(double& replay_s);
  void backoff(uint32_t attempt) const;
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }

  Opener open_;
  FailoverOptions options_;
  std::unique_ptr<net::Pipeline> inner_;
  size_t max_batch_ = 0;  // of the first pipeline: what the caller sized its batches by
  std::vector<Call> history_;
  uint64_t history_tokens_ = 0;
  std::vector<FailoverEvent> events_;
  std::string dropped_because_ = "no pipeline (the last failover gave up)";
};

}  // namespace omni::swarm
