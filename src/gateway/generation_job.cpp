#include "gateway/generation_job.h"

namespace omni::gateway {

JobUpdate GenerationJob::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return finished_ || !pending_text_.empty() || !pending_logprobs_.empty(); });
  JobUpdate u;
  u.text = std::move(pending_text_);
  pending_text_.clear();
  u.logprobs = std::move(pending_logprobs_);
  pending_logprobs_.clear();
  u.finished = finished_;
  u.finish_reason = finish_reason_;
  u.error = error_;
  u.prompt_tokens = spec_.prompt.size();
  u.completion_tokens = completion_tokens_;
  return u;
}

void GenerationJob::cancel() {
  std::lock_guard lock(mutex_);
  cancelled_ = true;
}

bool GenerationJob::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void GenerationJob::append(std::string_view text, size_t tokens, std::optional<TokenLogprob> logprob) {
  {
    std::lock_guard lock(mutex_);
    pending_text_ += text;
    if (logprob) pending_logprobs_.push_back(std::move(*logprob));
    completion_tokens_ += tokens;
  }
  changed_.notify_all();
}

void GenerationJob::finish(std::string reason, std::optional<Error> error) {
  size_t generated = 0;
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    finish_reason_ = std::move(reason);
    error_ = std::move(error);
    generated = completion_tokens_;
  }
  if (on_finished_) on_finished_(generated);
  changed_.notify_all();
}

bool GenerationJob::finished() const {
  std::lock_guard lock(mutex_);
  return finished_;
}

}  // namespace omni::gateway
