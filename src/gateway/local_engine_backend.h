// LocalEngineBackend: the whole model in this process (model::Session per sequence, one thread
// pool shared by all of them). A round's steps run as one batched step (Session::forward_batch:
// the weights are read once for all the sequences), which gives each sequence the bits its own
// Session::forward calls give; with `omni run`'s prompt batches (prefill_chunk 512) the same
// prompt and sampling give the same tokens.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/engine_backend.h"
#include "kernels/thread_pool.h"
#include "model/embedding.h"
#include "model/model.h"

namespace omni::gateway {

struct LocalBackendOptions {
  std::string model_path;
  std::string model_id;      // empty: the file name without ".gguf"
  int threads = 0;           // 0: every core
  uint32_t n_ctx = 0;        // 0: min(training context, 4096)
  std::string address;       // how the gateway is reached, for the swarm view
  // Prompt tokens per step of one sequence: shorter chunks let others' decoding go on between
  // them. The chunk boundaries change a prompt's rounding, so only 512 (`omni run`'s) gives
  // `omni run`'s tokens bit for bit.
  size_t prefill_chunk = 512;
};

class LocalEngineBackend final : public EngineBackend {
 public:
  static Result<std::unique_ptr<LocalEngineBackend>> load(const LocalBackendOptions& options);

  const ModelDescription& description() const override { return description_; }
  const model::Tokenizer& tokenizer() const override { return tokenizer_; }
  size_t max_batch() const override { return prefill_chunk_; }
  Result<std::unique_ptr<EngineSequence>> open_sequence(uint32_t n_ctx) override;
  void run_steps(std::span<EngineStep> steps) override;
  Result<void> copy_sequence(const EngineSequence& from, EngineSequence& to) override;
  // One embedding at a time, on a thread pool of its own (the scheduler's is not shared).
  Result<std::vector<float>> embed(std::span<const model::TokenId> tokens) override;
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override;

  // The most prompt tokens per step (larger chunks cost memory and stall the others' decoding).
  static constexpr size_t kMaxPrefillChunk = 4096;

 private:
  LocalEngineBackend(std::unique_ptr<model::Model> model, model::Tokenizer tokenizer, int threads)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), pool_(threads), threads_(threads) {}

  std::unique_ptr<model::Model> model_;
  model::Tokenizer tokenizer_;
  kernels::ThreadPool pool_;
  model::StepScratch scratch_;
  std::vector<model::SequenceStep> batch_;  // reused: no allocation per round
  size_t prefill_chunk_ = 512;
  int threads_;
  model::Pooling pooling_ = model::Pooling::Mean;
  std::mutex embed_mutex_;
  std::unique_ptr<kernels::ThreadPool> embed_pool_;  // made by the first embed()
  ModelDescription description_;
  std::string address_;
};

}  // namespace omni::gateway
