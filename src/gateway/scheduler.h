// Scheduler: runs many generations on one EngineBackend. Requests wait in a bounded FIFO queue
// for one of max_sessions sessions; the sessions advance together in rounds through a single
// run_steps() call each (continuous batching: a session joins at the round after its admission and
// leaves as soon as it finishes or its client cancels). Every decoding session gets its token in
// every round; prompts go in chunks of the backend's max_batch(), as many whole chunks as fit in
// max_batch_tokens after the decoding tokens (at least one per round), the prompts taking turns. So
// a long prompt delays the others' next token by one chunk at most, and a batching backend gets a
// round's steps at once.
//
// Fair use (fair_use.h): a job marked priority is admitted before the free tier's jobs that wait
// with it, in arrival order within each class; but while both wait, at least one admission in
// every free_every goes to the free tier, so contributors' traffic cannot starve it. Once admitted,
// every session is served alike (a token per round).
//
// Several choices of one prompt (n > 1) are submitted together as a group and admitted together:
// the first prefills the prompt, the others then copy its sequence (EngineBackend::copy_sequence)
// and go on from its logits, each with its own sampler; if the first fails before its prompt is
// in, the others prefill for themselves.
//
// Per token it does exactly what `omni run` does: sample, stop at an end-of-generation token,
// accept, detokenize, hold back possible stop-string starts; so greedy output (and seeded output)
// is the same token for token. A backend that speculates() samples its decoding steps' tokens
// itself (several per step), as `omni run --draft` does, except for a job whose output a grammar
// constrains or a logit_bias skews (each token is drawn from its own logits, one per step).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gateway/engine_backend.h"
#include "gateway/generation_job.h"

namespace omni::gateway {

struct SchedulerOptions {
  size_t max_sessions = 4;  // generating at once
  size_t max_queue = 64;    // waiting for a session; more are refused (503)
  size_t max_batch_tokens = 512;  // tokens per round, decoding tokens and prompt chunks together
  size_t free_every = 4;  // under load, at least one admission in this many goes to the free tier (>= 1)
};

// Callbacks from the scheduler's thread (keep them short).
struct SchedulerObserver {
  std::function<void(const GenerationJob&)> on_first_token;        // the first token was sampled
  std::function<void(const GenerationJob&, size_t)> on_tokens;     // tokens generated
  std::function<void(const GenerationJob&, size_t)> on_prompt;     // prompt tokens processed
  std::function<void(const GenerationJob&)> on_cancelled;          // dropped: its client left
};

class Scheduler {
 public:
  Scheduler(EngineBackend& backend, SchedulerOptions options, SchedulerObserver observer = {});
  ~Scheduler();  // finishes every job still queued or running with an error, then stops
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Finishes every job still queued or running with an error and stops the scheduler's thread;
  // later submissions are refused. Idempotent.
  void shutdown();

  // Queues `job`; false when the queue is full or the scheduler shut down (the job is untouched).
  bool submit(std::shared_ptr<GenerationJob> job);
  // Queues jobs with the same prompt as one group (see above): all of them or none (false, as
  // submit()). A group counts its jobs against max_queue and max_sessions; one larger than
  // max_sessions runs when nothing else does.
  bool submit_group(std::vector<std::shared_ptr<GenerationJob>> jobs);

  size_t queue_depth() const { return queue_depth_.load(); }
  size_t active_sessions() const { return active_count_.load(); }
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Active;
  void loop();
  // Samples one token for `a` from its logits; true when its generation is over.
  bool generate_token(Active& a);
  // Hands token `id` (sampled from `logits`; already accepted into the sampler when `accepted`) to
  // `a`'s job; true when its generation is over.
  bool emit_token(Active& a, model::TokenId id, std::span<const float> logits, bool accepted);
  // Under the lock: the queued group to admit next (queue_ is not empty), taken out of the queue;
  // empty when it does not fit beside `sessions` running ones.
  std::vector<std::shared_ptr<GenerationJob>> take_next(size_t sessions);
  // Opens `job`'s sequence and adds it to `active` (following `leader`'s prompt when not null);
  // null when the job was finished instead (cancelled, or no session).
  Active* admit(std::shared_ptr<GenerationJob> job, Active* leader, std::vector<std::unique_ptr<Active>>& active);
  // `leader`'s prompt is in: each job waiting for it copies its sequence and samples its first token.
  void fork_followers(Active& leader, std::vector<std::unique_ptr<Active>>& active);

  EngineBackend& backend_;
  const SchedulerOptions options_;
  const SchedulerObserver observer_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::vector<std::shared_ptr<GenerationJob>>> queue_;  // groups (most of one job)
  size_t queued_jobs_ = 0;
  bool stopping_ = false;
  std::atomic<size_t> queue_depth_{0};
  std::atomic<size_t> active_count_{0};
  size_t priority_streak_ = 0;  // priority admissions in a row while the free tier waited
  size_t prompt_turn_ = 0;  // which prompting session's chunk goes first next round
  std::thread thread_;
};

}  // namespace omni::gateway
