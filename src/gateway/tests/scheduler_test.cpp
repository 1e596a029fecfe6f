// The scheduler on the local backend with a shared test model: interleaved sessions give exactly
// the tokens each gives alone (and those of a plain Session::forward loop, which is what `omni run`
// does), cancelled jobs free their sessions, a full queue refuses.
#include "gateway/scheduler.h"

#include <gtest/gtest.h>

#include <thread>

#include "gateway/local_engine_backend.h"
#include "gateway/prompt_builder.h"
#include "model/model.h"

namespace omni::gateway {
namespace {

const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

std::unique_ptr<LocalEngineBackend> load_backend() {
  LocalBackendOptions o;
  o.model_path = kModel;
  o.threads = 1;  // see bench/gateway_load.sh: kernels::ThreadPool race under load
  auto b = LocalEngineBackend::load(o);
  EXPECT_TRUE(b.ok()) << (b.ok() ? "" : b.error().message);
  return b.ok() ? std::move(*b) : nullptr;
}

JobUpdate wait_until_finished(GenerationJob& job, std::string& text) {
  for (int i = 0; i < 600; ++i) {
    JobUpdate u = job.wait(std::chrono::milliseconds(100));
    text += u.text;
    if (u.finished) return u;
  }
  ADD_FAILURE() << "the job did not finish in 60 s";
  return {};
}

GenerationSpec spec_for(const LocalEngineBackend& backend, const std::string& prompt, int max_tokens, float temp,
                        uint64_t seed) {
  auto builder = PromptBuilder::create(backend.tokenizer(), "", "");
  EXPECT_TRUE(builder.ok());
  GenerationSpec s;
  s.prompt = builder->completion(prompt).tokens;
  s.max_tokens = max_tokens;
  s.sampling.temperature = temp;
  s.sampling.seed = seed;
  s.ignore_eos = true;  // random weights: keep going for a fixed number of tokens
  return s;
}

// The reference: the loop `omni run` runs, token by token, straight on a Session.
std::string reference_text(const GenerationSpec& spec) {
  auto model = model::Model::load(kModel);
  EXPECT_TRUE(model.ok());
  auto tok = model::Tokenizer::from_metadata((*model)->file().metadata());
  auto session = model::Session::create(**model, 0, (*model)->config().n_layer,
                                        static_cast<uint32_t>(spec.prompt.size() + spec.max_tokens));
  kernels::ThreadPool pool(1);
  std::vector<float> logits;
  EXPECT_TRUE((*session)->forward(spec.prompt, {}, model::Output::LastLogits, logits, pool).ok());
  auto sampler = model::Sampler::create(spec.sampling);
  for (auto t : spec.prompt) sampler->accept(t);
  model::Detokenizer detok(*tok);
  std::string text;
  for (int i = 0; i < spec.max_tokens; ++i) {
    const int32_t id = sampler->sample(logits);
    sampler->accept(id);
    text += *detok.feed(id);
    if (i + 1 == spec.max_tokens) break;
    const int32_t next[1] = {id};
    EXPECT_TRUE((*session)->forward(next, {}, model::Output::LastLogits, logits, pool).ok());
  }
  return text + detok.flush();
}

TEST(Scheduler, InterleavedSessionsMatchRunningAlone) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  std::vector<GenerationSpec> specs = {spec_for(*backend, "Once upon a time", 24, 0, 0),
                                       spec_for(*backend, "The quick brown fox jumps", 17, 0.8f, 7),
                                       spec_for(*backend, "Hello", 30, 1.0f, 123)};
  std::vector<size_t> max_active;
  Scheduler scheduler(*backend, {3, 8});
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (auto& s : specs) {
    jobs.push_back(std::make_shared<GenerationJob>(s));
    ASSERT_TRUE(scheduler.submit(jobs.back()));
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::string text;
    JobUpdate u = wait_until_finished(*jobs[i], text);
    EXPECT_EQ(u.finish_reason, "length");
    EXPECT_EQ(u.completion_tokens, static_cast<size_t>(specs[i].max_tokens));
    EXPECT_EQ(u.prompt_tokens, specs[i].prompt.size());
    EXPECT_EQ(text, reference_text(specs[i])) << "job " << i;
  }
  for (int i = 0; i < 100 && scheduler.active_sessions() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(scheduler.active_sessions(), 0u);
}

TEST(Scheduler, RoundRobinLetsAShortRequestFinishBeforeALongOne) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  Scheduler scheduler(*backend, {2, 8});
  auto long_job = std::make_shared<GenerationJob>(spec_for(*backend, "Once", 400, 0, 0));
  auto short_job = std::make_shared<GenerationJob>(spec_for(*backend, "Twice", 5, 0, 0));
  ASSERT_TRUE(scheduler.submit(long_job));
  ASSERT_TRUE(scheduler.submit(short_job));
  std::string text;
  EXPECT_EQ(wait_until_finished(*short_job, text).finish_reason, "length");
  EXPECT_FALSE(long_job->finished()) << "the short request waited for the long one";
  long_job->cancel();
  wait_until_finished(*long_job, text);
}

TEST(Scheduler, CancelFreesTheSessionAndAFullQueueRefuses) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  size_t cancelled = 0;
  SchedulerObserver observer;
  observer.on_cancelled = [&](const GenerationJob&) { ++cancelled; };
  Scheduler scheduler(*backend, {1, 2}, observer);
  auto running = std::make_shared<GenerationJob>(spec_for(*backend, "a", 1000, 0, 0));
  ASSERT_TRUE(scheduler.submit(running));
  // Wait until it runs (its first text arrives), so the next two wait in the queue.
  for (int i = 0; i < 100 && running->wait(std::chrono::milliseconds(50)).completion_tokens == 0; ++i) {
  }
  EXPECT_EQ(scheduler.active_sessions(), 1u);
  auto queued1 = std::make_shared<GenerationJob>(spec_for(*backend, "b", 3, 0, 0));
  auto queued2 = std::make_shared<GenerationJob>(spec_for(*backend, "c", 3, 0, 0));
  ASSERT_TRUE(scheduler.submit(queued1));
  ASSERT_TRUE(scheduler.submit(queued2));
  auto refused = std::make_shared<GenerationJob>(spec_for(*backend, "d", 3, 0, 0));
  EXPECT_FALSE(scheduler.submit(refused));
  EXPECT_EQ(scheduler.queue_depth(), 2u);
  // A queued job whose client left gives its place up at once.
  queued2->cancel();
  EXPECT_TRUE(scheduler.submit(refused));

  running->cancel();
  std::string text;
  EXPECT_EQ(wait_until_finished(*running, text).finish_reason, "cancelled");
  EXPECT_EQ(wait_until_finished(*queued1, text).finish_reason, "length");
  EXPECT_EQ(wait_until_finished(*refused, text).finish_reason, "length");
  EXPECT_FALSE(queued2->finished());  // dropped from the queue; nobody waits for it
  EXPECT_EQ(cancelled, 1u);
  // Jobs are finished before the round's bookkeeping: give the scheduler that moment.
  for (int i = 0; i < 100 && scheduler.active_sessions() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(scheduler.active_sessions(), 0u);
}

TEST(Scheduler, ShutdownFinishesEveryJob) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  auto scheduler = std::make_unique<Scheduler>(*backend, SchedulerOptions{1, 4});
  auto a = std::make_shared<GenerationJob>(spec_for(*backend, "a", 100000 / 100, 0, 0));
  auto b = std::make_shared<GenerationJob>(spec_for(*backend, "b", 10, 0, 0));
  ASSERT_TRUE(scheduler->submit(a));
  ASSERT_TRUE(scheduler->submit(b));
  scheduler.reset();
  EXPECT_TRUE(a->finished());
  EXPECT_TRUE(b->finished());
  std::string text;
  EXPECT_EQ(wait_until_finished(*b, text).finish_reason, "error");
}

}  // namespace
}  // namespace omni::gateway
