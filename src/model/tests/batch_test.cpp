// Session::forward_batch: a sequence's outputs are bit for bit the ones it gets alone, whatever
// else is in the batch (random mixes of prompt chunks and decode steps, every output kind, block
// ranges that take hidden states), bad steps fail alone, and steady-state steps do not allocate.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <string>

#include "base/testing/allocation_counter.h"
#include "model/model.h"

using omni::test_support::g_allocations;
using omni::test_support::g_counting;

namespace omni::model {
namespace {

const std::string kShared = OMNI_SHARED_DIR;
constexpr uint32_t kCtx = 128;

class Batch : public ::testing::TestWithParam<std::string> {
 public:
  void SetUp() override {
    auto m = Model::load(kShared + "/models/" + GetParam());
    ASSERT_TRUE(m) << m.error().message;
    model = std::move(*m);
  }
  std::unique_ptr<Session> session(uint32_t begin, uint32_t end) {
    auto s = Session::create(*model, begin, end, kCtx);
    EXPECT_TRUE(s) << s.error().message;
    return std::move(*s);
  }
  std::unique_ptr<Model> model;
  kernels::ThreadPool pool{2};
};

// `rounds` steps over `n_seq` pairs of sessions of blocks [begin, end): each step a random subset of
// the sequences runs a random prompt chunk (2..9 rows) or decode step (1 row) with a random output,
// alone in one session of the pair and together in the other.
void compare_random_mixes(Batch& t, uint32_t begin, uint32_t end, uint32_t seed) {
  const ModelConfig& c = t.model->config();
  std::mt19937 rng(seed);
  constexpr int kSequences = 6;
  std::vector<std::unique_ptr<Session>> alone, batched;
  for (int i = 0; i < kSequences; ++i) {
    alone.push_back(t.session(begin, end));
    batched.push_back(t.session(begin, end));
  }
  std::vector<std::vector<int32_t>> tokens(kSequences);
  std::vector<std::vector<float>> hidden(kSequences), expected(kSequences), got(kSequences);
  std::vector<Output> outputs;
  outputs.push_back(Output::Hidden);
  outputs.push_back(Output::LastHidden);
  if (end == c.n_layer) {
    outputs.push_back(Output::LastLogits);
    outputs.push_back(Output::LastLogits);
    outputs.push_back(Output::AllLogits);
  }
  StepScratch scratch;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int multi_and_single = 0;
  for (int round = 0; round < 14; ++round) {
    std::vector<SequenceStep> steps;
    bool multi = false, single = false;
    for (int i = 0; i < kSequences; ++i) {
      if (rng() % 4 == 0) continue;  // not in this step
      const uint32_t left = kCtx - alone[i]->n_past();
      uint32_t n = rng() % 3 == 0 ? 2 + rng() % 8 : 1;
      if (n > left) continue;
      (n > 1 ? multi : single) = true;
      tokens[i].clear();
      hidden[i].clear();
      for (uint32_t k = 0; k < n; ++k) {
        if (begin == 0) {
          tokens[i].push_back(static_cast<int32_t>(rng() % c.n_vocab));
        } else {
          for (uint32_t j = 0; j < c.n_embd; ++j) hidden[i].push_back(normal(rng));
        }
      }
      const Output output = outputs[rng() % outputs.size()];
      ASSERT_TRUE(alone[i]->forward(tokens[i], hidden[i], output, expected[i], t.pool));
      steps.push_back({batched[i].get(), tokens[i], hidden[i], output, &got[i], {}});
    }
    multi_and_single += multi && single;
    Session::forward_batch(steps, scratch, t.pool);
    for (const SequenceStep& step : steps) {
      ASSERT_TRUE(step.result) << step.result.error().message;
      const size_t i = static_cast<size_t>(
          std::find_if(batched.begin(), batched.end(), [&](const auto& s) { return s.get() == step.session; }) -
          batched.begin());
      ASSERT_EQ(*step.out, expected[i]) << "round " << round << ", sequence " << i << ", output "
                                        << static_cast<int>(step.output) << ", rows " << step.tokens.size();
      ASSERT_EQ(batched[i]->n_past(), alone[i]->n_past());
    }
  }
  EXPECT_GT(multi_and_single, 2) << "the random steps should mix prompt chunks with decode steps";
}

TEST_P(Batch, WholeModelGivesEachSequenceItsOwnBits) {
  compare_random_mixes(*this, 0, model->config().n_layer, 1);
}

TEST_P(Batch, BlockRangesGiveEachSequenceItsOwnBits) {
  const uint32_t n = model->config().n_layer;
  compare_random_mixes(*this, 0, 1, 2);          // embeddings in, hidden states out
  compare_random_mixes(*this, 1, n, 3);          // hidden states in, logits out
  if (n > 2) compare_random_mixes(*this, 1, n - 1, 4);  // hidden states both ways
}

TEST_P(Batch, BadStepsFailAloneAndTheOthersRun) {
  const uint32_t n = model->config().n_layer;
  auto a = session(0, n), b = session(0, n), other_range = session(0, 1), ref = session(0, n);
  const std::vector<int32_t> prompt{1, 2, 3, 4};
  const std::vector<int32_t> bad{static_cast<int32_t>(model->config().n_vocab)};
  std::vector<float> out_a, out_b, out_dup, out_range, out_ref;
  std::vector<SequenceStep> steps{{a.get(), prompt, {}, Output::LastLogits, &out_a, {}},
                                  {b.get(), bad, {}, Output::LastLogits, &out_b, {}},
                                  {a.get(), prompt, {}, Output::LastLogits, &out_dup, {}},
                                  {other_range.get(), prompt, {}, Output::Hidden, &out_range, {}},
                                  {nullptr, prompt, {}, Output::Hidden, &out_range, {}}};
  StepScratch scratch;
  Session::forward_batch(steps, scratch, pool);
  EXPECT_TRUE(steps[0].result);
  EXPECT_EQ(steps[1].result.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(steps[2].result.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(steps[3].result.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(steps[4].result.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(a->n_past(), prompt.size());
  EXPECT_EQ(b->n_past(), 0u);
  EXPECT_EQ(other_range->n_past(), 0u);
  ASSERT_TRUE(ref->forward(prompt, {}, Output::LastLogits, out_ref, pool));
  EXPECT_EQ(out_a, out_ref);
}

TEST_P(Batch, SteadyStateStepsDoNotAllocate) {
  if (!omni::test_support::kCountsAllocations) GTEST_SKIP() << "allocations are not counted under a sanitizer";
  const uint32_t n = model->config().n_layer;
  constexpr int kSequences = 4;
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<std::vector<float>> outs(kSequences);
  std::vector<int32_t> prompt{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int32_t> next(kSequences, 9);
  for (int i = 0; i < kSequences; ++i) sessions.push_back(session(0, n));
  StepScratch scratch;
  std::vector<SequenceStep> steps(kSequences);
  // One thread: the kernels' per-thread tile buffers also grow to the largest tile their thread has
  // run, and which thread runs which tile varies; with one thread the steady state is exact.
  kernels::ThreadPool one(1);
  auto run = [&](int round) {
    for (int i = 0; i < kSequences; ++i) {
      // One sequence takes a prompt chunk every other round, the others decode.
      const bool chunk = i == 0 && round % 2 == 0;
      steps[i] = {sessions[i].get(), chunk ? std::span<const int32_t>(prompt) : std::span<const int32_t>(&next[i], 1),
                  {}, Output::LastLogits, &outs[i], {}};
    }
    Session::forward_batch(steps, scratch, one);
    for (const SequenceStep& s : steps) ASSERT_TRUE(s.result);
  };
  for (int round = 0; round < 2; ++round) run(round);  // grows the scratch and the outputs
  g_allocations = 0;
  g_counting = true;
  for (int round = 2; round < 8; ++round) run(round);
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 0u);
  // The counter counts: a step that must grow its scratch allocates.
  auto fresh = session(0, n);
  std::vector<float> out;
  g_counting = true;
  ASSERT_TRUE(fresh->forward(prompt, {}, Output::LastLogits, out, one));
  g_counting = false;
  EXPECT_GT(g_allocations.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, Batch,
                         ::testing::Values("synth-llama-f16.gguf", "synth-llama-q8_0.gguf", "synth-llama-q4_0.gguf",
                                           "synth-llama-q4_k_m.gguf", "synth-llama-q6_k.gguf",
                                           "synth-qwen2-q8_0.gguf", "synth-qwen2-q4_k_m.gguf",
                                           "synth-phi3-q8_0.gguf"),
                         [](const auto& info) {
                           std::string s = info.param.substr(0, info.param.size() - 5);
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

}  // namespace
}  // namespace omni::model
