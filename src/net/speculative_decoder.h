// SpeculativeDecoder: generation through a Pipeline that turns one trip through the chain into
// several tokens. Each round it drafts up to K tokens locally, sends the last produced token and
// the drafts as one call (Pipeline::forward_all: every row's logits, each with the bits of a
// one-token call), keeps the longest prefix the target agrees with, and rolls the rest back on the
// nodes (with the next call) and in the draft.
//
// Drafts come from a small local model with the same vocabulary (--draft), or, without one, from
// the context itself: the continuation of the latest earlier occurrence of the last few tokens
// (prompt lookup). Greedy output is the same token sequence as one token per call; with sampling,
// the rejection rule (speculative_sampling.h) keeps the target's distribution.
//
// K adapts (unless options.adapt is false): the acceptance rate a and the costs measured so far (the call's time for one row, each
// further row's, a drafted token's) give the expected tokens per second of each K in
// [0, max_draft], and the best is used; K = 0 is a plain step. A drafter that stops paying (K = 0)
// gets a short try every kRetryRounds rounds, so a text that turns repetitive is noticed.
//
// The decoder calls sampler.accept() for every token it produces (the caller must not), and
// samples with it; one thread, like the Pipeline.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"
#include "model/sampler.h"
#include "net/pipeline.h"

namespace omni::net {

struct DraftOptions {
  const model::Model* draft = nullptr;  // a model with the target's vocabulary; nullptr: prompt lookup
  bool lookup = true;                   // without a draft model: prompt-lookup drafting (false: none)
  uint32_t max_draft = 8;               // K's upper bound (--draft-max); 0 turns drafting off
  bool adapt = true;                    // false: K = max_draft every round (--draft-fixed: measuring one K)
  uint32_t lookup_ngram = 3;            // longest suffix matched against the context
};

struct DraftStats {
  uint64_t rounds = 0;    // verification calls
  uint64_t drafted = 0;   // tokens sent as drafts
  uint64_t accepted = 0;  // drafts kept
  double acceptance() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  double mean_k() const { return rounds ? static_cast<double>(drafted) / rounds : 0.0; }
};

class SpeculativeDecoder {
 public:
  // `target` and `sampler` must outlive the decoder; n_ctx as the target's sessions. Errors: a
  // draft model whose vocabulary differs from the target's, K above what the pipeline takes.
  static Result<std::unique_ptr<SpeculativeDecoder>> create(Pipeline& target, const model::Model& target_model,
                                                            model::Sampler& sampler, const DraftOptions& options,
                                                            uint32_t n_ctx, kernels::ThreadPool& pool);

  // Runs the prompt through the target (in max_batch() pieces) and the draft; the first next()
  // samples from its logits.
  Result<void> prefill(std::span<const int32_t> prompt);
  // Instead of prefill(), for a caller that ran the prompt itself (the gateway's scheduler, in its
  // own chunks) and sampled the first token from its last row: the target holds every token of
  // `context` but the last, and the sampler has accepted all of them. next() goes on from there.
  // Errors: an empty context, one that fills n_ctx.
  Result<void> resume(std::span<const int32_t> context);

  struct Produced {
    int32_t id;
    std::span<const float> logits;  // the target's logits it was sampled from (valid until next())
  };
  // The next tokens (at least one; at most `budget`, >= 1): sampled, accepted into the sampler,
  // in order. A round that needs the network is one call to the target.
  Result<std::vector<Produced>> next(uint32_t budget);

  const DraftStats& stats() const { return stats_; }
  std::string summary() const;  // "draft: K mean 3.1, acceptance 72% over N rounds"

 private:
  SpeculativeDecoder(Pipeline& target, model::Sampler& sampler, const DraftOptions& options, uint32_t n_ctx,
                     uint32_t n_vocab, kernels::ThreadPool& pool);
  uint32_t choose_k(uint32_t budget) const;
  Result<void> draft_tokens(uint32_t k, std::vector<int32_t>& drafts, std::vector<std::vector<model::TokenProb>>& q);
  Result<void> sync_draft();  // the draft session holds seq_ (rolling back what it guessed wrong)
  void lookup_drafts(uint32_t k, std::vector<int32_t>& drafts) const;
  const float* row(size_t i) const { return logits_.data() + i * n_vocab_; }

  Pipeline& target_;
  model::Sampler& sampler_;
  DraftOptions options_;
  uint32_t n_ctx_;
  uint32_t n_vocab_;
  kernels::ThreadPool& pool_;
  std::unique_ptr<model::Session> draft_session_;
  std::vector<int32_t> draft_seq_;  // what draft_session_ holds
  std::mt19937_64 draft_rng_;       // the draft's draws: independent of the sampler's stream
  std::vector<int32_t> seq_;        // prompt and produced tokens
  uint32_t sent_ = 0;               // of seq_, the positions the target holds
  std::vector<float> logits_;       // rows of the last call (the prefill's: one)
  std::vector<float> draft_logits_;  // the draft's last row
  bool has_pending_row_ = false;    // logits_ row 0 is the next token's distribution (after prefill)
  DraftStats stats_;
  // Estimates for choosing K (seconds; exponential moving averages).
  double alpha_;                    // acceptance rate of a drafted token
  double call_s_ = 0;               // a one-row call
  double row_s_ = 0;                // each further row of a call
  double draft_s_ = 0;              // drafting one token
  uint32_t rounds_since_try_ = 0;
};

}  // namespace omni::net
