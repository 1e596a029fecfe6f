// GenerationJob: one request's generation, shared by the HTTP handler that waits for its text and
// the scheduler that produces it. The handler takes text as it arrives (wait()) and cancels the
// job when its client goes away; the scheduler appends text and finishes the job. Thread-safe.
// A job is finished exactly once, whoever finishes it (the scheduler, its shutdown, or a handler
// whose job was never queued); `on_finished` runs then, which is where what was reserved for the
// job is settled against what it used.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "model/sampler.h"
#include "model/token_constraint.h"
#include "model/tokenizer.h"

namespace omni::gateway {

// A generated token's log-probability under the model (the raw logits' softmax, before any
// sampling filter), with the most likely alternatives when asked for.
struct TokenLogprob {
  std::string token;  // its bytes as the tokenizer decodes them alone (may be part of a UTF-8 character)
  double logprob = 0;
  std::vector<std::pair<std::string, double>> top;  // most likely first
};

struct GenerationSpec {
  std::vector<model::TokenId> prompt;
  int max_tokens = 16;
  model::SamplingParams sampling;
  std::vector<std::string> stops;
  bool ignore_eos = false;
  std::string client;  // who asked (rate limits charge generated tokens to it)
  bool priority = false;  // a contributing node's request (fair_use.h): admitted before the free tier
  int logprobs = -1;   // >= 0: each generated token's log-prob and this many alternatives; -1: none
  // Grammar-constrained sampling: only tokens that keep the output a prefix of the grammar's
  // sentences, and the generation ends ("stop") once it is a whole one that nothing may extend.
  std::shared_ptr<const model::ConstrainedGrammar> grammar;
  // Added to these tokens' logits before sampling (ids within the vocabulary); -100 bans the token
  // outright (its logit becomes -infinity). Log-probs are reported from the unbiased logits.
  std::vector<std::pair<model::TokenId, float>> logit_bias;
};

// What a wait() returns: the text produced since the previous wait() and, at the end, how the
// generation finished.
struct JobUpdate {
  std::string text;
  bool finished = false;
  std::string finish_reason;          // when finished: "stop", "length", "cancelled" or "error"
  std::optional<Error> error;         // when finish_reason is "error": why (its code picks the HTTP status)
  size_t prompt_tokens = 0;
  size_t completion_tokens = 0;       // tokens generated so far
  std::vector<TokenLogprob> logprobs; // the tokens generated since the previous wait(), when asked for
};

class GenerationJob {
 public:
  using Clock = std::chrono::steady_clock;

  // Called once, from the thread that finishes the job, with the tokens it generated; must not call
  // back into the job.
  using OnFinished = std::function<void(size_t completion_tokens)>;

  explicit GenerationJob(GenerationSpec spec, OnFinished on_finished = {})
      : spec_(std::move(spec)), arrived_(Clock::now()), on_finished_(std::move(on_finished)) {}

  const GenerationSpec& spec() const { return spec_; }
  Clock::time_point arrived() const { return arrived_; }

  // Handler side. Returns as soon as there is new text or the job finished, or after `timeout`
  // (then with empty text: the caller may probe its connection and wait again).
  JobUpdate wait(std::chrono::milliseconds timeout);
  void cancel();
  bool cancelled() const;

  // Scheduler side.
  void append(std::string_view text, size_t tokens, std::optional<TokenLogprob> logprob = std::nullopt);
  void finish(std::string reason, std::optional<Error> error = std::nullopt);
  bool finished() const;

 private:
  const GenerationSpec spec_;
  const Clock::time_point arrived_;
  const OnFinished on_finished_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_text_;
  std::vector<TokenLogprob> pending_logprobs_;
  size_t completion_tokens_ = 0;
  bool finished_ = false;
  bool cancelled_ = false;
  std::string finish_reason_;
  std::optional<Error> error_;
};

}  // namespace omni::gateway
