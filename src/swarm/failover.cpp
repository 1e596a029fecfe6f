#include "swarm/failover.h"

#include <algorithm>
#include <cstdio>

namespace omni::swarm {

Result<std::unique_ptr<FailoverPipeline>> FailoverPipeline::create(Opener open, uint32_t max_attempts,
                                                                   std::function<void(const std::string&)> log) {
  std::unique_ptr<FailoverPipeline> p(new FailoverPipeline(std::move(open), std::max(max_attempts, 1u), std::move(log)));
  auto inner = p->open_();
  if (!inner) return inner.error();
  p->inner_ = std::move(*inner);
  p->max_batch_ = p->inner_->max_batch();
  return p;
}

size_t FailoverPipeline::max_batch() const { return max_batch_; }

Result<void> FailoverPipeline::forward(std::span<const int32_t> tokens, std::vector<float>& logits) {
  auto result = inner_ ? inner_->forward(tokens, logits) : Result<void>(Error{"no pipeline"});
  if (!result) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string reason = result.error().message;
    for (uint32_t attempt = 1;; ++attempt) {
      auto recovered = recover(reason);
      if (recovered) {
        result = inner_->forward(tokens, logits);
        if (result) break;
        reason = result.error().message;
      } else {
        reason = recovered.error().message;
      }
      if (attempt >= max_attempts_)
        return Error{"giving up after " + std::to_string(attempt) + " failover attempts; last: " + reason};
    }
    ++failovers_;
    recovery_s_.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    char line[160];
    std::snprintf(line, sizeof line, "failover %u: recovered in %.2f s (replayed %zu calls)", failovers_,
                  recovery_s_.back(), history_.size());
    log(line);
  }
  history_.emplace_back(tokens.begin(), tokens.end());
  return {};
}

Result<void> FailoverPipeline::recover(const std::string& reason) {
  log("pipeline failed (" + reason + "); re-routing and replaying " + std::to_string(history_.size()) + " calls");
  inner_.reset();  // frees its connections (and its event loop) before the next one is made
  auto inner = open_();
  if (!inner) return inner.error();
  std::vector<float> scratch;
  for (const auto& call : history_) {
    // A new chain with a smaller batch limit gets the call in pieces (then bit-equality is not
    // guaranteed, but the session survives).
    const size_t limit = std::max<size_t>((*inner)->max_batch(), 1);
    for (size_t i = 0; i < call.size(); i += limit) {
      std::span<const int32_t> piece(call.data() + i, std::min(limit, call.size() - i));
      if (auto r = (*inner)->forward(piece, scratch); !r) return Error{"replay: " + r.error().message};
    }
  }
  inner_ = std::move(*inner);
  return {};
}

std::string FailoverPipeline::summary() const {
  std::string s = inner_ ? inner_->summary() : "no pipeline";
  if (failovers_ > 0) {
    const double worst = *std::max_element(recovery_s_.begin(), recovery_s_.end());
    char b[96];
    std::snprintf(b, sizeof b, ", %u failovers (worst recovery %.2f s)", failovers_, worst);
    s += b;
  }
  return s;
}

}  // namespace omni::swarm
