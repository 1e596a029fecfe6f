#include "gateway/local_engine_backend.h"

#include <algorithm>
#include <filesystem>
#include <thread>

namespace omni::gateway {
namespace {

class LocalSequence final : public EngineSequence {
 public:
  explicit LocalSequence(std::unique_ptr<model::Session> session) : session_(std::move(session)) {}
  uint32_t n_past() const override { return session_->n_past(); }
  model::Session& session() { return *session_; }
  const model::Session& session() const { return *session_; }

 private:
  std::unique_ptr<model::Session> session_;
};

}  // namespace

Result<std::unique_ptr<LocalEngineBackend>> LocalEngineBackend::load(const LocalBackendOptions& options) {
  if (options.prefill_chunk == 0 || options.prefill_chunk > kMaxPrefillChunk)
    return Error{ErrorCode::InvalidArgument, "the prefill chunk must be 1.." + std::to_string(kMaxPrefillChunk) +
                                                 " tokens, not " + std::to_string(options.prefill_chunk)};
  auto model = model::Model::load(options.model_path);
  if (!model) return model.error();
  auto tokenizer = model::Tokenizer::from_metadata((*model)->file().metadata());
  if (!tokenizer) return tokenizer.error();
  const int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::unique_ptr<LocalEngineBackend> backend(
      new LocalEngineBackend(std::move(*model), std::move(*tokenizer), threads));
  const model::ModelConfig& cfg = backend->model_->config();
  ModelDescription& d = backend->description_;
  d.id = options.model_id.empty() ? std::filesystem::path(options.model_path).stem().string() : options.model_id;
  d.architecture = cfg.arch_name;
  d.n_layer = cfg.n_layer;
  d.n_ctx = options.n_ctx ? options.n_ctx : std::min<uint32_t>(cfg.n_ctx_train, 4096);
  if (const auto* src = backend->model_->file().metadata().find("tokenizer.chat_template"); src && src->as_string())
    d.chat_template_source = std::string(*src->as_string());
  d.no_sequence_copies.clear();
  d.n_embd = cfg.n_embd;
  if (auto pooling = model::pooling_of(*backend->model_)) {
    backend->pooling_ = *pooling;
    d.no_embeddings.clear();
  } else {
    d.no_embeddings = "this model gives no embeddings: " + pooling.error().message;
  }
  backend->address_ = options.address;
  backend->prefill_chunk_ = options.prefill_chunk;
  return backend;
}

Result<std::unique_ptr<EngineSequence>> LocalEngineBackend::open_sequence(uint32_t n_ctx) {
  auto session = model::Session::create(*model_, 0, model_->config().n_layer, n_ctx);
  if (!session) return session.error();
  return std::unique_ptr<EngineSequence>(new LocalSequence(std::move(*session)));
}

void LocalEngineBackend::run_steps(std::span<EngineStep> steps) {
  batch_.clear();
  for (EngineStep& step : steps)
    batch_.push_back({&static_cast<LocalSequence*>(step.sequence)->session(), step.tokens, {},
                      model::Output::LastLogits, step.logits, {}});
  model::Session::forward_batch(batch_, scratch_, pool_);
  for (size_t i = 0; i < steps.size(); ++i) steps[i].result = std::move(batch_[i].result);
}

Result<void> LocalEngineBackend::copy_sequence(const EngineSequence& from, EngineSequence& to) {
  return static_cast<LocalSequence&>(to).session().copy_from(static_cast<const LocalSequence&>(from).session());
}

Result<std::vector<float>> LocalEngineBackend::embed(std::span<const model::TokenId> tokens) {
  if (!description_.no_embeddings.empty()) return Error{ErrorCode::InvalidArgument, description_.no_embeddings};
  std::lock_guard lock(embed_mutex_);
  if (!embed_pool_) embed_pool_ = std::make_unique<kernels::ThreadPool>(threads_);
  return model::embed(*model_, tokens, pooling_, true, description_.n_ctx, *embed_pool_,
                      static_cast<uint32_t>(prefill_chunk_));
}

SwarmSnapshot LocalEngineBackend::swarm_snapshot(const GatewayLoad& load) const {
  SwarmSnapshot s;
  s.nodes.push_back({"local", address_, description_.id, 0, description_.n_layer, load.tokens_per_second,
                     load.active_sessions});
  SwarmModel model;
  model.name = description_.id;
  model.n_layer = description_.n_layer;
  s.models.push_back(std::move(model));
  compute_coverage(s);
  return s;
}

}  // namespace omni::gateway
