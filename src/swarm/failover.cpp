#include "swarm/failover.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "swarm/replay_plan.h"

namespace omni::swarm {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

bool is_retryable(ErrorCode code) {
  return code == ErrorCode::Unavailable || code == ErrorCode::DeadlineExceeded || code == ErrorCode::ResourceExhausted;
}

Result<std::unique_ptr<FailoverPipeline>> FailoverPipeline::create(Opener open, FailoverOptions options) {
  options.max_attempts = std::max(options.max_attempts, 1u);
  std::unique_ptr<FailoverPipeline> p(new FailoverPipeline(std::move(open), std::move(options)));
  const uint32_t max = p->options_.max_attempts;
  Error last;
  for (uint32_t attempt = 1; attempt <= max; ++attempt) {
    if (attempt > 1) p->backoff(attempt - 1);
    auto inner = p->open_();
    if (inner) {
      p->inner_ = std::move(*inner);
      p->max_batch_ = p->inner_->max_batch();
      return p;
    }
    last = inner.error();
    if (!is_retryable(last.code)) return last.with_context("opening a pipeline");
    if (attempt < max)
      p->log("opening a pipeline failed (attempt " + std::to_string(attempt) + " of " + std::to_string(max) +
             "): " + last.message);
  }
  return last.with_context("giving up after " + std::to_string(max) + " attempts to open a pipeline; last");
}

size_t FailoverPipeline::max_batch() const { return max_batch_; }

void FailoverPipeline::backoff(uint32_t failures) const {
  if (options_.backoff_ms == 0) return;
  uint64_t ms = options_.backoff_ms;
  for (uint32_t i = 1; i < failures && ms < options_.max_backoff_ms; ++i) ms *= 2;
  std::this_thread::sleep_for(std::chrono::milliseconds(std::min<uint64_t>(ms, options_.max_backoff_ms)));
}

Result<void> FailoverPipeline::forward(std::span<const int32_t> tokens, std::vector<float>& logits) {
  return call(tokens, /*all_rows=*/false, logits);
}

Result<void> FailoverPipeline::forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) {
  return call(tokens, /*all_rows=*/true, logits);
}

Result<void> FailoverPipeline::rollback(uint32_t n) {
  if (n > history_tokens_)
    return Error{ErrorCode::InvalidArgument, "cannot roll back " + std::to_string(n) + " positions: the session holds " +
                                                 std::to_string(history_tokens_)};
  // A pipeline that is gone gets the shorter history replayed on the next call.
  if (inner_)
    if (auto r = inner_->rollback(n); !r) return r;
  history_tokens_ -= n;
  while (n > 0) {
    Call& last = history_.back();
    const uint32_t cut = std::min<uint32_t>(n, static_cast<uint32_t>(last.tokens.size()));
    last.tokens.resize(last.tokens.size() - cut);
    if (last.tokens.empty()) history_.pop_back();
    n -= cut;
  }
  return {};
}

Result<void> FailoverPipeline::call(std::span<const int32_t> tokens, bool all_rows, std::vector<float>& logits) {
  const auto started = Clock::now();
  auto send = [&]() { return all_rows ? inner_->forward_all(tokens, logits) : inner_->forward(tokens, logits); };
  // After giving up, the next call starts over with opening a pipeline.
  auto result = inner_ ? send() : Result<void>(Error{ErrorCode::Unavailable, dropped_because_});
  if (!result && !is_retryable(result.error().code)) return result;
  if (!result) {
    const auto failed_at = Clock::now();
    FailoverEvent event;
    event.reason = result.error().message;
    event.detect_s = std::chrono::duration<double>(failed_at - started).count();
    char line[96];
    std::snprintf(line, sizeof line, "call failed after %.2f s (", event.detect_s);
    log(line + event.reason + "); re-routing and replaying " + std::to_string(history_.size()) + " calls");
    const uint32_t max = options_.max_attempts;
    Error reason;
    uint32_t attempt = 1;
    for (;; ++attempt) {
      if (attempt > 1) backoff(attempt - 1);
      if (auto r = open_and_replay(event.replay_s); !r) {
        reason = r.error();
      } else if (result = send(); !result) {
        reason = result.error().with_context("the retried call");
      } else {
        break;
      }
      log("failover attempt " + std::to_string(attempt) + " of " + std::to_string(max) + " failed: " + reason.message);
      if (!is_retryable(reason.code)) {
        inner_.reset();
        dropped_because_ = "no pipeline (the last failover gave up)";
        return reason.with_context("failover attempt " + std::to_string(attempt));
      }
      if (attempt >= max) {
        inner_.reset();
        dropped_because_ = "no pipeline (the last failover gave up)";
        char b[96];
        std::snprintf(b, sizeof b, "giving up after %u failover attempts in %.1f s; last", attempt,
                      seconds_since(failed_at));
        return reason.with_context(b);
      }
    }
    event.attempts = attempt;
    event.replayed = history_.size();
    event.recovery_s = seconds_since(failed_at);
    events_.push_back(event);
    char b[200];
    std::snprintf(b, sizeof b,
                  "failover %zu: recovered in %.2f s after %u attempt(s) (replayed %zu calls in %.2f s; the failed "
                  "call had waited %.2f s)",
                  events_.size(), event.recovery_s, attempt, event.replayed, event.replay_s, event.detect_s);
    log(b);
  }
  history_.push_back({std::vector<int32_t>(tokens.begin(), tokens.end()), all_rows});
  history_tokens_ += tokens.size();
  return {};
}

Result<void> FailoverPipeline::redo_last(std::vector<float>& logits, std::string why) {
  if (history_.empty()) return Error{ErrorCode::InvalidArgument, "no call to run again"};
  Call last = std::move(history_.back());
  history_.pop_back();
  history_tokens_ -= last.tokens.size();
  inner_.reset();
  dropped_because_ = std::move(why);
  return call(last.tokens, last.all_rows, logits);
}

Result<void> FailoverPipeline::open_and_replay(double& replay_s) {
  inner_.reset();  // frees its connections (and its event loop) before the next one is made
  auto inner = open_();
  if (!inner) return inner.error();
  const auto started = Clock::now();
  std::vector<float> scratch;
  // Verification calls (forward_all) have rows summed per token. A new chain with a smaller batch
  // limit gets a prompt batch in pieces (then bit-equality is not guaranteed, but the session
  // survives).
  std::vector<KeptCall> kept;
  kept.reserve(history_.size());
  for (const Call& c : history_) kept.push_back({c.tokens, c.all_rows});
  for (const ReplayCall& c : plan_replay(kept, (*inner)->max_batch())) {
    auto r = c.per_token ? (*inner)->replay_steps(c.tokens) : (*inner)->forward(c.tokens, scratch);
    if (!r) return r.error().with_context("replay");
  }
  replay_s = seconds_since(started);
  inner_ = std::move(*inner);
  return {};
}

std::string FailoverPipeline::summary() const {
  std::string s = inner_ ? inner_->summary() : "no pipeline";
  if (!events_.empty()) {
    double worst = 0;
    for (const auto& e : events_) worst = std::max(worst, e.detect_s + e.recovery_s);
    char b[96];
    std::snprintf(b, sizeof b, ", %zu failovers (longest pause %.2f s)", events_.size(), worst);
    s += b;
  }
  return s;
}

}  // namespace omni::swarm
