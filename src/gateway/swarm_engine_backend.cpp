#include "gateway/swarm_engine_backend.h"

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "net/speculative_decoder.h"

namespace omni::gateway {
namespace {

// A sequence's pipeline lives on a thread of its own: a remote pipeline (and the probes of its
// opening) run a kj event loop on the thread that uses them, and a thread holds one event loop at a
// time, so two sequences cannot share the scheduler's thread.
// What a sequence's decoder is made of (the backend's).
struct SpeculationSetup {
  const model::Model& target;
  const model::Model* draft;
  bool lookup;
  bool lookup_sampled;
  uint32_t draft_max;
  bool draft_fixed;
  kernels::ThreadPool& pool;
};

class SwarmSequence final : public EngineSequence {
 public:
  using Opener = std::function<Result<std::unique_ptr<net::Pipeline>>()>;

  static Result<std::unique_ptr<SwarmSequence>> open(const Opener& opener, uint32_t n_ctx,
                                                     std::function<void(const std::string&)> log) {
    std::unique_ptr<SwarmSequence> s(new SwarmSequence());
    Result<void> opened;
    s->run([&] {
      auto p = opener();
      if (p) s->pipeline_ = std::move(*p);
      else opened = p.error();
    });
    if (!opened) return opened.error();
    s->n_ctx_ = n_ctx;
    s->log_ = std::move(log);
    return s;
  }

  ~SwarmSequence() override {
    run([this] {
      if (decoder_ && decoder_->stats().rounds && log_) log_("sequence closed: " + decoder_->summary());
      decoder_.reset();
      pipeline_.reset();
    });
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  uint32_t n_past() const override { return n_past_; }

  // Starts the step on the sequence's thread; `step` must stay put until wait() returns, which
  // sets its result.
  void start_forward(EngineStep& step) {
    start([this, &step] {
      const auto tokens = step.tokens;
      const size_t batch = std::min(SwarmEngineBackend::kPromptBatch, pipeline_->max_batch());
      Result<void> result;
      for (size_t i = 0; i < tokens.size() && result; i += batch) {
        const auto part = tokens.subspan(i, std::min(batch, tokens.size() - i));
        result = pipeline_->forward(part, *step.logits);
        if (result) {
          n_past_ += static_cast<uint32_t>(part.size());
          context_.insert(context_.end(), part.begin(), part.end());
        }
      }
      step.result = std::move(result);
    });
  }

  // Waits for the job started last.
  void wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !job_; });
  }

  // A decoding step through a SpeculativeDecoder, made on the first one (after the prompt, whose
  // last row the scheduler sampled `last` from).
  Result<void> decode(model::TokenId last, model::Sampler& sampler, uint32_t budget,
                      std::vector<ProducedToken>& produced, const SpeculationSetup& setup) {
    Result<void> result;
    run([&] { result = decode_here(last, sampler, budget, produced, setup); });
    return result;
  }

 private:
  SwarmSequence() : thread_([this] { loop(); }) {}

  Result<void> decode_here(model::TokenId last, model::Sampler& sampler, uint32_t budget,
                           std::vector<ProducedToken>& produced, const SpeculationSetup& setup) {
    produced.clear();
    if (!decoder_) {
      net::DraftOptions options;
      options.draft = setup.draft;
      options.max_draft = setup.draft_max;
      options.adapt = !setup.draft_fixed;
      // Lookup drafts depend on timing (K adapts), which a seeded request must not.
      options.lookup = setup.lookup && (setup.lookup_sampled || sampler.params().temperature <= 0.0f);
      auto decoder = net::SpeculativeDecoder::create(*pipeline_, setup.target, sampler, options, n_ctx_, setup.pool);
      if (!decoder) return decoder.error();
      context_.push_back(last);
      if (auto r = (*decoder)->resume(context_); !r) return r;
      decoder_ = std::move(*decoder);
      context_ = {};
    }
    auto tokens = decoder_->next(budget);
    if (!tokens) return tokens.error();
    for (const auto& t : *tokens) produced.push_back({t.id, std::vector<float>(t.logits.begin(), t.logits.end())});
    n_past_ += static_cast<uint32_t>(tokens->size());
    return {};
  }

  void start(std::function<void()> job) {
    std::lock_guard lock(mutex_);
    job_ = std::move(job);
    changed_.notify_all();
  }

  // Runs `job` on the sequence's thread and waits for it.
  void run(std::function<void()> job) {
    start(std::move(job));
    wait();
  }

  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stopping_ || job_; });
      if (!job_) return;  // stopping, nothing left to run
      lock.unlock();
      job_();
      lock.lock();
      job_ = nullptr;
      changed_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::function<void()> job_;
  bool stopping_ = false;
  std::unique_ptr<net::Pipeline> pipeline_;  // made, used and destroyed on thread_
  std::unique_ptr<net::SpeculativeDecoder> decoder_;  // on thread_, over pipeline_
  std::vector<model::TokenId> context_;  // what pipeline_ holds until decoder_ takes over
  std::function<void(const std::string&)> log_;
  uint32_t n_ctx_ = 0;
  uint32_t n_past_ = 0;
  std::thread thread_;  // last: starts once the members above exist
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
  if (options.draft && options.draft->config().n_vocab != cfg.n_vocab)
    return Error{ErrorCode::InvalidArgument, "the draft model has " + std::to_string(options.draft->config().n_vocab) +
                                                 " tokens, the model " + std::to_string(cfg.n_vocab) +
                                                 ": a draft must share the model's vocabulary"};
  std::string chat_template;
  if (const auto* src = client_model->file().metadata().find("tokenizer.chat_template"); src && src->as_string())
    chat_template = std::string(*src->as_string());
  std::unique_ptr<SwarmEngineBackend> backend(new SwarmEngineBackend(
      std::move(client_model), std::move(*tokenizer), directory, watch, std::move(options), threads));
  backend->options_.client.head_combiner = &backend->head_combiner_;
  ModelDescription& d = backend->description_;
  d.id = backend->options_.model_id;
  d.no_sequence_copies =
      "n > 1 is not available on the swarm: a generation's KV cache lives on the nodes of its chain, and the "
      "node protocol cannot fork it (each choice would cost the nodes a prefill of its own)";
  d.no_embeddings =
      "embeddings are not available on the swarm: a remote pipeline brings back the last position's state "
      "only (for the next token), and pooling needs every position's";
  d.n_embd = cfg.n_embd;
  d.architecture = cfg.arch_name;
  d.n_layer = cfg.n_layer;
  d.n_ctx = backend->options_.n_ctx ? backend->options_.n_ctx : std::min<uint32_t>(cfg.n_ctx_train, 4096);
  d.chat_template_source = std::move(chat_template);
  return backend;
}

Result<std::unique_ptr<EngineSequence>> SwarmEngineBackend::open_sequence(uint32_t n_ctx) {
  auto sequence = SwarmSequence::open([&]() -> Result<std::unique_ptr<net::Pipeline>> {
    if (directory_) return swarm::make_swarm_pipeline(*model_, *directory_, options_.client, n_ctx, pool_);
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
    remote.head_combiner = c.head_combiner;
    return net::make_remote_pipeline(*model_, remote, n_ctx, pool_);
  }, n_ctx, options_.client.log);
  if (!sequence) return sequence.error();
  return std::unique_ptr<EngineSequence>(std::move(*sequence));
}

void SwarmEngineBackend::run_steps(std::span<EngineStep> steps) {
  const bool speculating = std::any_of(steps.begin(), steps.end(), [](const EngineStep& s) { return s.sampler; });
  if (!speculating) {
    // All at once, each on its sequence's thread: their calls reach the nodes together and share
    // the nodes' passes, and their heads share batches in head_combiner_.
    for (EngineStep& step : steps) static_cast<SwarmSequence*>(step.sequence)->start_forward(step);
    for (EngineStep& step : steps) static_cast<SwarmSequence*>(step.sequence)->wait();
    return;
  }
  // A decoder's draft model runs on the one pool: these steps run one after another.
  const SpeculationSetup setup{*model_, options_.draft.get(), options_.lookup, options_.lookup_sampled,
                               options_.draft_max, options_.draft_fixed, pool_};
  for (EngineStep& step : steps) {
    auto* sequence = static_cast<SwarmSequence*>(step.sequence);
    if (step.sampler) {
      step.result = sequence->decode(step.tokens[0], *step.sampler, step.budget, *step.produced, setup);
    } else {
      sequence->start_forward(step);
      sequence->wait();
    }
  }
}

SwarmSnapshot SwarmEngineBackend::swarm_snapshot(const GatewayLoad&) const { return watch_.snapshot(); }

}  // namespace omni::gateway
