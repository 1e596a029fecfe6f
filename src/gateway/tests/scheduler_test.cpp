// The scheduler on the local backend with a shared test model: interleaved sessions give exactly
// the tokens each gives alone (and those of a plain Session::forward loop, which is what `omni run`
// does), long prompts go in chunks between the others' tokens within the round's token budget,
// taking turns, cancelled jobs free their sessions, a full queue refuses.
#include "gateway/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "gateway/local_engine_backend.h"
#include "gateway/prompt_builder.h"
#include "model/model.h"

namespace omni::gateway {
namespace {

const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

std::unique_ptr<LocalEngineBackend> load_backend(size_t prefill_chunk = 512) {
  LocalBackendOptions o;
  o.model_path = kModel;
  o.prefill_chunk = prefill_chunk;
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

// Greedy ids straight from a Session loop, with `bias` applied by hand (-100: never chosen).
std::vector<int32_t> reference_greedy_ids(const GenerationSpec& spec,
                                          const std::vector<std::pair<model::TokenId, float>>& bias) {
  auto model = model::Model::load(kModel);
  EXPECT_TRUE(model.ok());
  auto session = model::Session::create(**model, 0, (*model)->config().n_layer,
                                        static_cast<uint32_t>(spec.prompt.size() + spec.max_tokens));
  kernels::ThreadPool pool(1);
  std::vector<float> logits;
  EXPECT_TRUE((*session)->forward(spec.prompt, {}, model::Output::LastLogits, logits, pool).ok());
  std::vector<int32_t> ids;
  for (int i = 0; i < spec.max_tokens; ++i) {
    for (const auto& [token, b] : bias) logits[token] = b <= -100.0f ? -1e30f : logits[token] + b;
    ids.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    if (i + 1 == spec.max_tokens) break;
    const int32_t next[1] = {ids.back()};
    EXPECT_TRUE((*session)->forward(next, {}, model::Output::LastLogits, logits, pool).ok());
  }
  return ids;
}

std::string detokenize(const model::Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  model::Detokenizer detok(tokenizer);
  std::string text;
  for (int32_t id : ids) text += *detok.feed(id);
  return text + detok.flush();
}

TEST(Scheduler, LogitBiasBansAndForcesTokens) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  Scheduler scheduler(*backend, {2, 8});
  // Ban every token the unbiased greedy run chooses: none of them may appear.
  GenerationSpec banned = spec_for(*backend, "Once upon a time", 20, 0, 0);
  const std::vector<int32_t> plain = reference_greedy_ids(banned, {});
  for (int32_t id : plain) banned.logit_bias.emplace_back(id, -100.0f);
  std::sort(banned.logit_bias.begin(), banned.logit_bias.end());
  banned.logit_bias.erase(std::unique(banned.logit_bias.begin(), banned.logit_bias.end()), banned.logit_bias.end());
  const std::vector<int32_t> expected = reference_greedy_ids(banned, banned.logit_bias);
  for (int32_t id : expected) EXPECT_EQ(std::count(plain.begin(), plain.end(), id), 0) << "token " << id;
  auto job = std::make_shared<GenerationJob>(banned);
  ASSERT_TRUE(scheduler.submit(job));
  std::string text;
  EXPECT_EQ(wait_until_finished(*job, text).finish_reason, "length");
  EXPECT_EQ(text, detokenize(backend->tokenizer(), expected));
  EXPECT_NE(text, detokenize(backend->tokenizer(), plain));

  // +100 on one token at temperature 1: it is drawn every time.
  const int32_t forced = plain.back() + 1;
  GenerationSpec force = spec_for(*backend, "Once upon a time", 12, 1.0f, 99);
  force.logit_bias = {{forced, 100.0f}};
  auto forced_job = std::make_shared<GenerationJob>(force);
  ASSERT_TRUE(scheduler.submit(forced_job));
  text.clear();
  EXPECT_EQ(wait_until_finished(*forced_job, text).finish_reason, "length");
  EXPECT_EQ(text, detokenize(backend->tokenizer(), std::vector<int32_t>(12, forced)));
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

// The local backend, recording each round's steps: (sequence, tokens) in order.
class RecordingBackend final : public EngineBackend {
 public:
  explicit RecordingBackend(std::unique_ptr<LocalEngineBackend> inner) : inner_(std::move(inner)) {}
  const ModelDescription& description() const override { return inner_->description(); }
  const model::Tokenizer& tokenizer() const override { return inner_->tokenizer(); }
  size_t max_batch() const override { return inner_->max_batch(); }
  Result<std::unique_ptr<EngineSequence>> open_sequence(uint32_t n_ctx) override {
    return inner_->open_sequence(n_ctx);
  }
  void run_steps(std::span<EngineStep> steps) override {
    std::vector<std::pair<const EngineSequence*, size_t>> round;
    for (const EngineStep& s : steps) round.emplace_back(s.sequence, s.tokens.size());
    {
      std::lock_guard lock(mutex_);
      rounds_.push_back(std::move(round));
    }
    inner_->run_steps(steps);
  }
  Result<void> copy_sequence(const EngineSequence& from, EngineSequence& to) override {
    return inner_->copy_sequence(from, to);
  }
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override { return inner_->swarm_snapshot(load); }
  std::vector<std::vector<std::pair<const EngineSequence*, size_t>>> rounds() const {
    std::lock_guard lock(mutex_);
    return rounds_;
  }

 private:
  std::unique_ptr<LocalEngineBackend> inner_;
  mutable std::mutex mutex_;
  std::vector<std::vector<std::pair<const EngineSequence*, size_t>>> rounds_;
};

TEST(Scheduler, LongPromptsGoInChunksBetweenTheOthersTokensAndTakeTurns) {
  constexpr size_t kChunk = 16, kBudget = 24;
  auto local = load_backend(kChunk);
  ASSERT_TRUE(local);
  const GenerationSpec decoding = spec_for(*local, "Once upon a time", 40, 0, 0);
  ASSERT_LE(decoding.prompt.size(), kChunk);
  std::string long_text;
  for (int i = 0; i < 30; ++i) long_text += "the quick brown fox jumps over the lazy dog ";
  const GenerationSpec long_a = spec_for(*local, long_text, 2, 0, 0);
  const GenerationSpec long_b = spec_for(*local, "And " + long_text, 2, 0, 0);
  ASSERT_GT(long_a.prompt.size(), 8 * kChunk);
  RecordingBackend backend(std::move(local));
  Scheduler scheduler(backend, {3, 8, kBudget});
  auto first = std::make_shared<GenerationJob>(decoding);
  ASSERT_TRUE(scheduler.submit(first));
  // The long prompts arrive while the first generation decodes.
  std::string text;
  for (int i = 0; i < 100; ++i) {
    const JobUpdate u = first->wait(std::chrono::milliseconds(50));
    text += u.text;
    if (u.completion_tokens != 0) break;
  }
  auto a = std::make_shared<GenerationJob>(long_a), b = std::make_shared<GenerationJob>(long_b);
  ASSERT_TRUE(scheduler.submit(a));
  ASSERT_TRUE(scheduler.submit(b));
  EXPECT_EQ(wait_until_finished(*first, text).finish_reason, "length");
  EXPECT_EQ(text, reference_text(decoding)) << "a prompt that fits one chunk gives `omni run`'s tokens";
  EXPECT_EQ(wait_until_finished(*a, text).finish_reason, "length");
  EXPECT_EQ(wait_until_finished(*b, text).finish_reason, "length");

  // Every round: at most the budget (a chunk alone may exceed it), chunks of kChunk but a prompt's
  // last, and while the first job decodes it is in every round.
  const auto rounds = backend.rounds();
  const EngineSequence* decoder = rounds.front().front().first;
  size_t rounds_with_chunks = 0, decoded_during_chunks = 0;
  std::map<const EngineSequence*, size_t> prompt_rounds;
  const EngineSequence* previous_chunk_owner = nullptr;
  size_t turns = 0;
  for (const auto& round : rounds) {
    size_t total = 0, chunks = 0;
    bool has_decoder = false;
    for (const auto& [sequence, n] : round) {
      total += n;
      has_decoder = has_decoder || sequence == decoder;
      if (n > 1 && sequence != decoder) {
        ++chunks;
        EXPECT_LE(n, kChunk);
        if (previous_chunk_owner && sequence != previous_chunk_owner) ++turns;
        previous_chunk_owner = sequence;
        ++prompt_rounds[sequence];
      }
    }
    EXPECT_TRUE(total <= kBudget || (chunks == 1 && total <= kChunk + round.size()));
    if (chunks > 0) {
      ++rounds_with_chunks;
      if (has_decoder) ++decoded_during_chunks;
    }
  }
  EXPECT_GT(rounds_with_chunks, 8u);
  EXPECT_GT(decoded_during_chunks, 8u) << "the first job's tokens went on during the long prompts";
  EXPECT_EQ(prompt_rounds.size(), 2u);
  EXPECT_GT(turns, 4u) << "the two long prompts should take turns, not go one after the other";
}

// n choices of one prompt: the prompt runs once, and each choice's text is what its own sampler
// gives after a fresh prefill (a plain Session loop): seeded choices differ from each other, greedy
// ones agree.
TEST(Scheduler, ChoicesOfOnePromptSharePrefillAndEachMatchesRunningAlone) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  size_t prompt_tokens = 0;
  SchedulerObserver observer;
  observer.on_prompt = [&](const GenerationJob&, size_t n) { prompt_tokens += n; };
  Scheduler scheduler(*backend, {4, 8}, observer);
  for (float temperature : {0.9f, 0.0f}) {
    SCOPED_TRACE(temperature);
    std::vector<GenerationSpec> specs;
    std::vector<std::shared_ptr<GenerationJob>> jobs;
    for (uint64_t i = 0; i < 3; ++i) {
      specs.push_back(spec_for(*backend, "The quick brown fox jumps over", 12, temperature, 40 + i));
      jobs.push_back(std::make_shared<GenerationJob>(specs.back()));
    }
    prompt_tokens = 0;
    ASSERT_TRUE(scheduler.submit_group(jobs));
    std::vector<std::string> texts(3);
    for (size_t i = 0; i < jobs.size(); ++i) {
      JobUpdate u = wait_until_finished(*jobs[i], texts[i]);
      EXPECT_EQ(u.finish_reason, "length");
      EXPECT_EQ(texts[i], reference_text(specs[i])) << "choice " << i;
    }
    EXPECT_EQ(prompt_tokens, specs[0].prompt.size()) << "the prompt was prefilled once";
    if (temperature > 0) {
      EXPECT_NE(texts[0], texts[1]);
      EXPECT_NE(texts[1], texts[2]);
    } else {
      EXPECT_EQ(texts[0], texts[1]);
      EXPECT_EQ(texts[1], texts[2]);
    }
  }
}

// A group waits until its sessions are free together, and counts its jobs in the queue.
TEST(Scheduler, AGroupCountsEveryJobAgainstTheQueue) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  Scheduler scheduler(*backend, {2, 3});
  auto running = std::make_shared<GenerationJob>(spec_for(*backend, "a", 1000, 0, 0));
  ASSERT_TRUE(scheduler.submit(running));
  for (int i = 0; i < 100 && running->wait(std::chrono::milliseconds(50)).completion_tokens == 0; ++i) {
  }
  std::vector<std::shared_ptr<GenerationJob>> group;
  for (int i = 0; i < 2; ++i) group.push_back(std::make_shared<GenerationJob>(spec_for(*backend, "b", 3, 0, 0)));
  ASSERT_TRUE(scheduler.submit_group(group));
  EXPECT_EQ(scheduler.queue_depth(), 2u) << "one session is free, but the group needs two";
  std::vector<std::shared_ptr<GenerationJob>> too_many;
  for (int i = 0; i < 2; ++i) too_many.push_back(std::make_shared<GenerationJob>(spec_for(*backend, "c", 3, 0, 0)));
  EXPECT_FALSE(scheduler.submit_group(too_many)) << "2 + 2 jobs over a queue of 3";
  running->cancel();
  std::string text;
  for (auto& job : group) EXPECT_EQ(wait_until_finished(*job, text).finish_reason, "length");
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

namespace omni::gateway {
namespace {

TEST(Scheduler, PriorityJobsGoFirstWithoutStarvingTheFreeTier) {
  auto backend = load_backend();
  ASSERT_TRUE(backend);
  std::mutex mutex;
  std::vector<std::string> order;  // clients, in the order their first token came (one session)
  SchedulerObserver observer;
  observer.on_first_token = [&](const GenerationJob& job) {
    std::lock_guard lock(mutex);
    order.push_back(job.spec().client);
  };
  SchedulerOptions options{1, 64};
  options.free_every = 4;
  Scheduler scheduler(*backend, options, observer);
  auto running = std::make_shared<GenerationJob>(spec_for(*backend, "a", 1000, 0, 0));
  ASSERT_TRUE(scheduler.submit(running));
  for (int i = 0; i < 100 && running->wait(std::chrono::milliseconds(50)).completion_tokens == 0; ++i) {
  }
  // Under load (the one session busy): 5 free-tier jobs arrive first, then 6 priority ones.
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (int i = 0; i < 11; ++i) {
    GenerationSpec s = spec_for(*backend, "b", 2, 0, 0);
    s.priority = i >= 5;
    s.client = (s.priority ? "p" : "f") + std::to_string(i);
    jobs.push_back(std::make_shared<GenerationJob>(s));
    ASSERT_TRUE(scheduler.submit(jobs.back()));
  }
  running->cancel();
  std::string text;
  for (auto& j : jobs) EXPECT_EQ(wait_until_finished(*j, text).finish_reason, "length");
  std::lock_guard lock(mutex);
  ASSERT_EQ(order.size(), 12u);  // the running job's first token, then the 11
  const std::vector<std::string> admitted(order.begin() + 1, order.end());
  // The rule, replayed here: while both classes wait, free_every - 1 priority jobs then a free one;
  // each class in arrival order.
  std::vector<std::string> expected;
  std::vector<std::string> free{"f0", "f1", "f2", "f3", "f4"}, prio{"p5", "p6", "p7", "p8", "p9", "p10"};
  size_t streak = 0;
  while (!free.empty() || !prio.empty()) {
    const bool free_turn = !free.empty() && (prio.empty() || streak + 1 >= options.free_every);
    auto& from = free_turn ? free : prio;
    streak = (!free_turn && !free.empty()) ? streak + 1 : 0;
    expected.push_back(from.front());
    from.erase(from.begin());
  }
  EXPECT_EQ(admitted, expected);
  // What that means: the first contributor is served before any of the earlier anonymous jobs, and
  // the first anonymous job still gets in before the last contributor.
  EXPECT_EQ(admitted.front(), "p5");
  EXPECT_LT(std::find(admitted.begin(), admitted.end(), "f0"), std::find(admitted.begin(), admitted.end(), "p10"));
}

}  // namespace
}  // namespace omni::gateway
