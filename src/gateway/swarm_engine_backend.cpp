#include "gateway/swarm_engine_backend.h"

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace omni::gateway {
namespace {

// A sequence's pipeline lives on a thread of its own: a remote pipeline (and the probes of its
// opening) run a kj event loop on the thread that uses them, and a thread holds one event loop at a
// time, so two sequences cannot share the scheduler's thread.
class SwarmSequence final : public EngineSequence {
 public:
  using Opener = std::function<Result<std::unique_ptr<net::Pipeline>>()>;

  static Result<std::unique_ptr<SwarmSequence>> open(const Opener& opener) {
    std::unique_ptr<SwarmSequence> s(new SwarmSequence());
    Result<void> opened;
    s->run([&] {
      auto p = opener();
      if (p) s->pipeline_ = std::move(*p);
      else opened = p.error();
    });
    if (!opened) return opened.error();
    return s;
  }

  ~SwarmSequence() override {
    run([this] { pipeline_.reset(); });
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
        if (result) n_past_ += static_cast<uint32_t>(part.size());
      }
      step.result = std::move(result);
    });
  }

  // Waits for the job started last.
  void wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !job_; });
  }

 private:
  SwarmSequence() : thread_([this] { loop(); }) {}

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
  std::string chat_template;
  if (const auto* src = client_model->file().metadata().find("tokenizer.chat_template"); src && src->as_string())
    chat_template = std::string(*src->as_string());
  std::unique_ptr<SwarmEngineBackend> backend(new SwarmEngineBackend(
      std::move(client_model), std::move(*tokenizer), directory, watch, std::move(options), threads));
  backend->options_.client.head_combiner = &backend->head_combiner_;
  ModelDescription& d = backend->description_;
  d.id = backend->options_.model_id;
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
  });
  if (!sequence) return sequence.error();
  return std::unique_ptr<EngineSequence>(std::move(*sequence));
}

void SwarmEngineBackend::run_steps(std::span<EngineStep> steps) {
  // All at once, each on its sequence's thread: their calls reach the nodes together and share
  // the nodes' passes, and their heads share batches in head_combiner_.
  for (EngineStep& step : steps) static_cast<SwarmSequence*>(step.sequence)->start_forward(step);
  for (EngineStep& step : steps) static_cast<SwarmSequence*>(step.sequence)->wait();
}

SwarmSnapshot SwarmEngineBackend::swarm_snapshot(const GatewayLoad&) const { return watch_.snapshot(); }

}  // namespace omni::gateway
