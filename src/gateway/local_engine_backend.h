// LocalEngineBackend: the whole model in this process (model::Session per sequence, one thread
// pool shared by all of them, used by one step at a time). Its steps are exactly the
// Session::forward calls `omni run` makes, so the same prompt and sampling give the same tokens.
#pragma once

#include <memory>
#include <string>

#include "gateway/engine_backend.h"
#include "kernels/thread_pool.h"
#include "model/model.h"

namespace omni::gateway {

struct LocalBackendOptions {
  std::string model_path;
  std::string model_id;      // empty: the file name without ".gguf"
  int threads = 0;           // 0: every core
  uint32_t n_ctx = 0;        // 0: min(training context, 4096)
  std::string address;       // how the gateway is reached, for the swarm view
};

class LocalEngineBackend final : public EngineBackend {
 public:
  static Result<std::unique_ptr<LocalEngineBackend>> load(const LocalBackendOptions& options);

  const ModelDescription& description() const override { return description_; }
  const model::Tokenizer& tokenizer() const override { return tokenizer_; }
  size_t max_batch() const override { return kPromptBatch; }
  Result<std::unique_ptr<EngineSequence>> open_sequence(uint32_t n_ctx) override;
  void run_steps(std::span<EngineStep> steps) override;
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override;

  // `omni run` feeds prompts in batches of 512: batch boundaries change the rounding, so equal
  // batches are what makes the outputs equal.
  static constexpr size_t kPromptBatch = 512;

 private:
  LocalEngineBackend(std::unique_ptr<model::Model> model, model::Tokenizer tokenizer, int threads)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), pool_(threads) {}

  std::unique_ptr<model::Model> model_;
  model::Tokenizer tokenizer_;
  kernels::ThreadPool pool_;
  ModelDescription description_;
  std::string address_;
};

}  // namespace omni::gateway
