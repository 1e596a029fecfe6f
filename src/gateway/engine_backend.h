// EngineBackend: what the gateway runs inference on. The scheduler opens one EngineSequence per
// request and advances many of them in rounds through run_steps(); sampling, detokenizing and stop
// strings stay in the gateway, so any backend gives the same tokens for the same logits.
//
// The local backend (local_engine_backend.h) runs the whole model in this process; the swarm
// backend (swarm_engine_backend.h) drives one remote pipeline per sequence. run_steps() receives a
// round's steps together so that a backend (or a batching engine) can overlap or fuse them.
//
// Threads: run_steps() and open_sequence() are called from the scheduler's thread only; the other
// methods may be called from any thread (the tokenizer is thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "gateway/swarm_view.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace omni::gateway {

struct ModelDescription {
  std::string id;            // what clients put in "model"
  std::string architecture;  // "llama", "qwen2", ...
  uint32_t n_layer = 0;
  uint32_t n_ctx = 0;        // the longest sequence (prompt + completion) a session may hold
  std::string chat_template_source;  // tokenizer.chat_template, empty when the model has none
  // Empty when copy_sequence() works (n choices of a prompt share its prefill); otherwise why not,
  // for the client.
  std::string no_sequence_copies = "this backend cannot copy a sequence";
  // Empty when embed() works; otherwise why not, for the client.
  std::string no_embeddings = "this backend cannot compute embeddings";
  uint32_t n_embd = 0;  // an embedding's length
};

// One sequence's state in the backend (its KV cache, or its remote sessions).
class EngineSequence {
 public:
  virtual ~EngineSequence() = default;
  virtual uint32_t n_past() const = 0;
};

// A token a speculating backend produced, with the logits it was sampled from.
struct ProducedToken {
  model::TokenId id = 0;
  std::vector<float> logits;
};

// One forward step of one sequence: run `tokens` at its next positions, put the last token's
// logits into `logits`; `result` says whether it worked.
//
// A decoding step (one token, the last one sampled) of a backend that speculates() comes with
// `sampler` instead: the backend drafts, verifies and samples itself, putting 1..budget tokens
// into `produced`, each already accepted into the sampler (the same sampler on every step of a
// sequence); `logits` is then left alone.
struct EngineStep {
  EngineSequence* sequence = nullptr;
  std::span<const model::TokenId> tokens;
  std::vector<float>* logits = nullptr;
  model::Sampler* sampler = nullptr;
  uint32_t budget = 0;
  std::vector<ProducedToken>* produced = nullptr;
  Result<void> result;
};

// What the gateway measured, for the backend's swarm report.
struct GatewayLoad {
  double tokens_per_second = 0;
  size_t active_sessions = 0;
};

class EngineBackend {
 public:
  virtual ~EngineBackend() = default;
  virtual const ModelDescription& description() const = 0;
  virtual const model::Tokenizer& tokenizer() const = 0;
  // The most tokens one step may carry (prompts go in steps of this size).
  virtual size_t max_batch() const = 0;
  // A sequence of up to n_ctx positions. Error: not enough memory, or the backend cannot serve.
  virtual Result<std::unique_ptr<EngineSequence>> open_sequence(uint32_t n_ctx) = 0;
  // Whether decoding steps take a sampler (speculative decoding: several tokens per step).
  virtual bool speculates() const { return false; }
  // Runs every step (in any order, or together) and sets each one's result.
  virtual void run_steps(std::span<EngineStep> steps) = 0;
  // Makes `to` (opened by this backend, large enough) continue `from`'s sequence: its next step
  // gives what `from`'s would. How n choices of one prompt share its prefill. Scheduler's thread.
  // Error: the backend cannot (description().no_sequence_copies says why), or `to` is too small.
  virtual Result<void> copy_sequence(const EngineSequence& from, EngineSequence& to) {
    (void)from;
    (void)to;
    return Error{ErrorCode::InvalidArgument, description().no_sequence_copies};
  }
  // The embedding of `tokens` (model/embedding.h: the final hidden states pooled as the model
  // declares, normalized). Any thread, beside the scheduler's steps. Errors: the backend cannot
  // (description().no_embeddings says why), token ids outside the vocabulary, more than n_ctx.
  virtual Result<std::vector<float>> embed(std::span<const model::TokenId> tokens) {
    (void)tokens;
    return Error{ErrorCode::InvalidArgument, description().no_embeddings};
  }
  virtual SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const = 0;
};

}  // namespace omni::gateway
