// FailoverPipeline: a Pipeline (src/net/pipeline.h) that survives the loss of nodes. It keeps every
// call made so far (the session's tokens, in the batches they were sent); when the inner pipeline
// fails, it drops it, asks `open` for a new one (which routes around dead nodes), replays the calls
// in the same batches to rebuild the KV caches on the new chain, and retries the failed call.
//
// Replaying the same batches makes the new caches bit-identical to the lost ones (batch shape
// changes rounding), so greedy output after a failover equals the output without one.
//
// Single thread, like any Pipeline. Errors: `open` failing `max_attempts` times in a row for one
// call (the last reason is returned, with the history of attempts).
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

class FailoverPipeline final : public net::Pipeline {
 public:
  using Opener = std::function<Result<std::unique_ptr<net::Pipeline>>()>;

  // Opens the first inner pipeline now. `log` gets one line per failover (may be empty).
  static Result<std::unique_ptr<FailoverPipeline>> create(Opener open, uint32_t max_attempts,
                                                          std::function<void(const std::string&)> log);

  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override;
  size_t max_batch() const override;
  std::string summary() const override;

  uint32_t failovers() const { return failovers_; }
  // Seconds from a failure to the retried call's success, one per failover.
  const std::vector<double>& recovery_s() const { return recovery_s_; }

 private:
  FailoverPipeline(Opener open, uint32_t max_attempts, std::function<void(const std::string&)> log)
      : open_(std::move(open)), max_attempts_(max_attempts), log_(std::move(log)) {}
  Result<void> recover(const std::string& reason);
  void log(const std::string& line) const {
    if (log_) log_(line);
  }

  Opener open_;
  uint32_t max_attempts_;
  std::function<void(const std::string&)> log_;
  std::unique_ptr<net::Pipeline> inner_;
  size_t max_batch_ = 0;  // of the first pipeline: what the caller sized its batches by
  std::vector<std::vector<int32_t>> history_;
  uint32_t failovers_ = 0;
  std::vector<double> recovery_s_;
};

}  // namespace omni::swarm
