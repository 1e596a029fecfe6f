#include "gateway/swarm_engine_backend.h"

#include <algorithm>
#include <thread>

namespace omni::gateway {
namespace {

class SwarmSequence final : public EngineSequence {
 public:
  explicit SwarmSequence(std::unique_ptr<net::Pipeline> pipeline) : pipeline_(std::move(pipeline)) {}
  uint32_t n_past() const override { return n_past_; }
  Result<void> forward(std::span<const model::TokenId> tokens, std::vector<float>& logits) {
    const size_t batch = std::min(SwarmEngineBackend::kPromptBatch, pipeline_->max_batch());
    for (size_t i = 0; i < tokens.size(); i += batch) {
      const auto part = tokens.subspan(i, std::min(batch, tokens.size() - i));
      if (auto r = pipeline_->forward(part, logits); !r) return r;
      n_past_ += static_cast<uint32_t>(part.size());
    }
    return {};
  }

 private:
  std::unique_ptr<net::Pipeline> pipeline_;
  uint32_t n_past_ = 0;
};

}  // namespace

Result<std::unique_ptr<SwarmEngineBackend>> SwarmEngineBackend::create(std::unique_ptr<model::Model> client_model,
                                                                        swarm::Directory* directory,
                                                                        const SwarmWatch& watch,
                                                                        SwarmBackendOptions options) {
  auto tokenizer = model::Tokenizer::from_metadata(client_model->file().metadata());
  if (!tokenizer) return tokenizer.error();
  const int threads =
      options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const model::ModelConfig cfg = client_model->config();
  std::string chat_template;
  if (const auto* src = client_model->file().metadata().find("tokenizer.chat_template"); src && src->as_string())
    chat_template = std::string(*src->as_string());
  std::unique_ptr<SwarmEngineBackend> backend(new SwarmEngineBackend(
      std::move(client_model), std::move(*tokenizer), directory, watch, std::move(options), threads));
  ModelDescription& d = backend->description_;
  d.id = backend->options_.model_id;
  d.architecture = cfg.arch_name;
  d.n_layer = cfg.n_layer;
  d.n_ctx = backend->options_.n_ctx ? backend->options_.n_ctx : std::min<uint32_t>(cfg.n_ctx_train, 4096);
  d.chat_template_source = std::move(chat_template);
  return backend;
}

Result<std::unique_ptr<EngineSequence>> SwarmEngineBackend::open_sequence(uint32_t n_ctx) {
  Result<std::unique_ptr<net::Pipeline>> pipeline = Error{""};
  if (directory_) {
    pipeline = swarm::make_swarm_pipeline(*model_, *directory_, options_.client, n_ctx, pool_);
  } else {
    const swarm::SwarmClientOptions& c = options_.client;
    net::RemoteOptions remote;
    remote.peers = options_.peers;
    remote.encoding = c.encoding;
    remote.topology = c.topology;
    remote.data_dir = c.data_dir;
    remote.connect_timeout_s = c.connect_timeout_s;
    remote.call_timeout_s = c.call_timeout_s;
    remote.log = c.log;
    remote.model_identity = c.model_identity;
    pipeline = net::make_remote_pipeline(*model_, remote, n_ctx, pool_);
  }
  if (!pipeline) return pipeline.error();
  return std::unique_ptr<EngineSequence>(new SwarmSequence(std::move(*pipeline)));
}

void SwarmEngineBackend::run_steps(std::span<EngineStep> steps) {
  // One pool for the embeddings and head: the steps run one after another.
  for (EngineStep& step : steps) step.result = static_cast<SwarmSequence*>(step.sequence)->forward(step.tokens, *step.logits);
}

SwarmSnapshot SwarmEngineBackend::swarm_snapshot(const GatewayLoad&) const { return watch_.snapshot(); }

}  // namespace omni::gateway
