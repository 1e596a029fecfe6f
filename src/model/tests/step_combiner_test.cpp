// StepCombiner: heads handed in by several threads at once come out with the bits each gets alone
// (Session::forward on its own), steps that meet share a batch, and a bad step fails alone.
#include <gtest/gtest.h>

#include <barrier>
#include <random>
#include <string>
#include <thread>

#include "model/step_combiner.h"

namespace omni::model {
namespace {

const std::string kShared = OMNI_SHARED_DIR;

TEST(StepCombiner, ThreadsGetTheBitsOfOneAtATimeAndShareBatches) {
  auto m = Model::load(kShared + "/models/synth-llama-q8_0.gguf");
  ASSERT_TRUE(m) << m.error().message;
  const ModelConfig& c = (*m)->config();
  constexpr int kThreads = 6, kRounds = 20;
  kernels::ThreadPool pool(2);
  StepCombiner combiner(pool);
  // Each thread owns a head session (blocks [n_layer, n_layer): hidden row in, logits out) and a
  // twin run alone, on another pool, with the same rows.
  std::vector<std::vector<std::vector<float>>> rows(kThreads);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& thread_rows : rows)
    for (int r = 0; r < kRounds; ++r) {
      thread_rows.emplace_back(c.n_embd);
      for (float& x : thread_rows.back()) x = normal(rng);
    }
  std::vector<std::vector<std::vector<float>>> expected(kThreads), got(kThreads);
  kernels::ThreadPool alone_pool(1);
  for (int t = 0; t < kThreads; ++t) {
    auto s = Session::create(**m, c.n_layer, c.n_layer, kRounds);
    ASSERT_TRUE(s);
    for (int r = 0; r < kRounds; ++r) {
      expected[t].emplace_back();
      ASSERT_TRUE((*s)->forward({}, rows[t][r], Output::LastLogits, expected[t].back(), alone_pool));
    }
  }
  std::barrier start(kThreads);
  std::vector<std::thread> threads;
  std::vector<char> ok(kThreads, 1);  // not vector<bool>: threads write their own elements
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      auto s = Session::create(**m, c.n_layer, c.n_layer, kRounds);
      if (!s) {
        ok[t] = 0;
        return;
      }
      for (int r = 0; r < kRounds; ++r) {
        start.arrive_and_wait();  // the threads hand their steps in together
        got[t].emplace_back();
        SequenceStep step{s->get(), {}, rows[t][r], Output::LastLogits, &got[t].back(), {}};
        combiner.run(step);
        if (!step.result) ok[t] = 0;
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(ok[t]) << "thread " << t;
    for (int r = 0; r < kRounds; ++r) ASSERT_EQ(got[t][r], expected[t][r]) << "thread " << t << ", round " << r;
  }
  EXPECT_EQ(combiner.steps(), uint64_t{kThreads} * kRounds);
  // Steps released together meet: fewer batches than steps (one batch per step would mean no
  // merging at all).
  EXPECT_LT(combiner.batches(), combiner.steps());
}

TEST(StepCombiner, ABadStepFailsAloneAndAnIdleCombinerRunsAtOnce) {
  auto m = Model::load(kShared + "/models/synth-llama-q8_0.gguf");
  ASSERT_TRUE(m) << m.error().message;
  const ModelConfig& c = (*m)->config();
  kernels::ThreadPool pool(1);
  StepCombiner combiner(pool);
  auto s = Session::create(**m, c.n_layer, c.n_layer, 4);
  ASSERT_TRUE(s);
  std::vector<float> wrong_size(c.n_embd + 1, 0.5f), out;
  SequenceStep bad{s->get(), {}, wrong_size, Output::LastLogits, &out, {}};
  combiner.run(bad);  // one caller, nobody running: it runs its own step and returns
  ASSERT_FALSE(bad.result);
  EXPECT_EQ(bad.result.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ((*s)->n_past(), 0u);
  std::vector<float> row(c.n_embd, 0.25f);
  SequenceStep good{s->get(), {}, row, Output::LastLogits, &out, {}};
  combiner.run(good);
  ASSERT_TRUE(good.result) << good.result.error().message;
  EXPECT_EQ(out.size(), c.n_vocab);
  EXPECT_EQ(combiner.batches(), 2u);
}

}  // namespace
}  // namespace omni::model
