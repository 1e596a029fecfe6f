// Sampler: picks the next token from a vector of logits; StopDetector: finds stop strings in the
// streamed text; top_logprobs: the most likely tokens with their log-probabilities.
//
// The sampler follows llama.cpp's default chain: repetition/frequency/presence penalties, then
// top-k, top-p, min-p, temperature, and a seeded draw. A Sampler is one generation's state (its
// token history and its random stream); it is not thread-safe. Same params and seed, same logits
// and same accepted tokens => same sequence of draws.
//
// End-of-generation tokens are not handled here: the caller checks them through the tokenizer.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/result.h"

namespace omni::model {

using TokenId = int32_t;  // same alias as model/tokenizer.h

struct TokenProb {
  TokenId id;
  double p;
};

struct SamplingParams {
  // <= 0 means greedy: the argmax of the (penalized) logits, ties to the lowest id, and the
  // filters below are skipped.
  float temperature = 0.8f;
  int top_k = 40;       // <= 0 disables
  float top_p = 0.95f;  // in [0, 1]; 1 disables
  float min_p = 0.05f;  // in [0, 1]; 0 disables. Keeps tokens with p >= min_p * p_max.
  // CTRL-paper repetition penalty: a penalized token's logit is divided by it when positive and
  // multiplied by it when not. Must be > 0; 1 disables.
  float repeat_penalty = 1.0f;
  int repeat_last_n = 64;  // how many accepted tokens are penalized; 0 none, -1 all since reset()
  // OpenAI's penalties: logit -= count * frequency_penalty + (count > 0) * presence_penalty.
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  // The draw's random stream. Fixed by default, so runs are reproducible; pass a random seed for
  // fresh samples.
  uint64_t seed = 0;
};

class Sampler {
 public:
  // An Error names the first parameter that is out of range (or NaN).
  static Result<Sampler> create(const SamplingParams& params);

  // Draws a token from `logits` (raw, one per vocabulary entry, at least one of them finite).
  // Does not record it: call accept() with the token actually appended to the sequence. Costs a
  // pass over the logits when top-k is on; top-p without top-k also sorts about as many tokens as
  // its nucleus holds. Allocates only while its buffers grow to the vocabulary's size.
  TokenId sample(std::span<const float> logits);

  // The distribution sample() draws from, over the tokens it would keep (penalties, top-k, top-p,
  // min-p and temperature applied; greedy: the argmax with probability 1), probabilities summing
  // to 1. Draws nothing. Speculative sampling needs it for the target and the draft.
  std::vector<TokenProb> distribution(std::span<const float> logits);

  // The next uniform number in [0, 1) of this sampler's random stream.
  double uniform();

  // Records a token of the sequence (prompt tokens too, if they should be penalized).
  void accept(TokenId token);

  // Forgets the history and restarts the random stream from the seed.
  void reset();

  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    TokenId id;
    float logit;
  };

  explicit Sampler(const SamplingParams& params);

  bool penalties_active() const;
  std::span<const float> penalized(std::span<const float> logits);
  void select_candidates(std::span<const float> logits);
  void keep_top_p();
  void keep_min_p();
  double softmax_weights();
  TokenId draw();

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::deque<TokenId> window_;               // the last repeat_last_n accepted tokens
  std::unordered_map<TokenId, int> counts_;  // occurrences of each token in window_
  // Reused across calls.
  std::vector<float> penalized_;
  std::vector<Candidate> candidates_;
  std::vector<double> weights_;
};

// The k most likely tokens under log_softmax(logits), best first, ties to the lower id (fewer if
// the vocabulary is smaller). Computed in double; for reporting logprobs, not for sampling.
std::vector<std::pair<TokenId, float>> top_logprobs(std::span<const float> logits, int k);
// The log-probability of `id` under the softmax of `logits` (computed in double, as top_logprobs).
double token_logprob(std::span<const float> logits, TokenId id);

// Watches streamed text for stop strings. feed() returns the part of the text so far that can be
// shown: it holds back any tail that could be the start of a stop string, so a client never sees
// part of one, and once a stop string appears it returns only the text before it. The stop is
// the occurrence that ends first (of those, the longest), which is where generation would halt.
class StopDetector {
 public:
  explicit StopDetector(std::vector<std::string> stop_strings);  // empty strings are ignored

  // The next decoded piece; returns the text that is now safe to emit (possibly empty).
  std::string feed(std::string_view piece);
  // True once a stop string was seen; later feeds return "".
  bool stopped() const { return stopped_; }
  // For a generation that ended otherwise (end token, length limit): the held-back text.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace omni::model
