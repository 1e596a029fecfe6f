// Properties of the forward pass that need no reference: block ranges compose bit-exactly, KV
// rollback restores the state, batches agree with one-token steps, bad input is an error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include <unistd.h>

#include "gguf/writer.h"
#include "model/model.h"

namespace omni::model {
namespace {

const std::string kShared = OMNI_SHARED_DIR;

class Engine : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto m = Model::load(kShared + "/models/" + GetParam());
    ASSERT_TRUE(m) << m.error().message;
    model = std::move(*m);
  }
  std::unique_ptr<Session> session(uint32_t begin, uint32_t end) {
    auto s = Session::create(*model, begin, end, 64);
    EXPECT_TRUE(s) << s.error().message;
    return std::move(*s);
  }
  std::unique_ptr<Model> model;
  kernels::ThreadPool pool{2};
  const std::vector<int32_t> prompt{1, 450, 4996, 17354, 1701, 29916, 432};
};

TEST_P(Engine, SplitBlockRangesGiveBitIdenticalLogits) {
  const uint32_t n = model->config().n_layer;
  std::vector<float> whole, hidden, hidden2, split;
  auto one = session(0, n);
  ASSERT_TRUE(one->forward(prompt, {}, Output::AllLogits, whole, pool));
  for (uint32_t cut = 1; cut < n; ++cut) {
    auto a = session(0, cut);
    auto b = session(cut, n);
    ASSERT_TRUE(a->forward(prompt, {}, Output::Hidden, hidden, pool));
    ASSERT_EQ(hidden.size(), prompt.size() * model->config().n_embd);
    ASSERT_TRUE(b->forward({}, hidden, Output::AllLogits, split, pool));
    ASSERT_EQ(split, whole) << "cut at block " << cut;
  }
  // Three pieces, then a decode step through all of them.
  auto a = session(0, 1), b = session(1, n - 1), c = session(n - 1, n);
  ASSERT_TRUE(a->forward(prompt, {}, Output::Hidden, hidden, pool));
  ASSERT_TRUE(b->forward({}, hidden, Output::Hidden, hidden2, pool));
  ASSERT_TRUE(c->forward({}, hidden2, Output::AllLogits, split, pool));
  EXPECT_EQ(split, whole);
  std::vector<float> step_whole, step_split;
  const std::vector<int32_t> next{29892};
  ASSERT_TRUE(one->forward(next, {}, Output::LastLogits, step_whole, pool));
  ASSERT_TRUE(a->forward(next, {}, Output::Hidden, hidden, pool));
  ASSERT_TRUE(b->forward({}, hidden, Output::Hidden, hidden2, pool));
  ASSERT_TRUE(c->forward({}, hidden2, Output::LastLogits, step_split, pool));
  EXPECT_EQ(step_split, step_whole);
}

TEST_P(Engine, RollbackRestoresState) {
  const uint32_t n = model->config().n_layer;
  auto s = session(0, n);
  std::vector<float> first, again, other;
  ASSERT_TRUE(s->forward(prompt, {}, Output::LastLogits, first, pool));
  ASSERT_TRUE(s->forward({{5, 6, 7}}, {}, Output::LastLogits, other, pool));
  EXPECT_EQ(s->n_past(), prompt.size() + 3);
  ASSERT_TRUE(s->rollback(4));
  ASSERT_TRUE(s->forward({{prompt.back()}}, {}, Output::LastLogits, again, pool));
  EXPECT_EQ(again, first);
  EXPECT_FALSE(s->rollback(1000));
}

// A forked session continues exactly as a fresh prefill of the same prompt would: the same logits
// bit for bit on every later step, into a context of another size too, and the original goes on
// unaffected. A block range's fork (hidden states in) is the same.
TEST_P(Engine, CopiedSessionContinuesBitIdenticallyToAFreshPrefill) {
  const uint32_t n = model->config().n_layer;
  auto fresh = session(0, n), original = session(0, n);
  auto forked = Session::create(*model, 0, n, 32);
  ASSERT_TRUE(forked) << forked.error().message;
  std::vector<float> expected, got, original_out;
  ASSERT_TRUE(fresh->forward(prompt, {}, Output::LastLogits, expected, pool));
  ASSERT_TRUE(original->forward(prompt, {}, Output::LastLogits, original_out, pool));
  ASSERT_TRUE((*forked)->forward({{9, 9, 9}}, {}, Output::LastLogits, got, pool));  // stale state to overwrite
  ASSERT_TRUE((*forked)->copy_from(*original));
  EXPECT_EQ((*forked)->n_past(), prompt.size());
  for (int32_t token : {42, 7, 300, 1}) {
    ASSERT_TRUE(fresh->forward({{token}}, {}, Output::LastLogits, expected, pool));
    ASSERT_TRUE((*forked)->forward({{token}}, {}, Output::LastLogits, got, pool));
    EXPECT_EQ(got, expected) << "token " << token;
  }
  // The original diverges on its own tokens without disturbing the fork, and the other way round.
  ASSERT_TRUE(original->forward({{42}}, {}, Output::LastLogits, original_out, pool));
  auto check = session(0, n);
  std::vector<float> check_out;
  ASSERT_TRUE(check->forward(prompt, {}, Output::LastLogits, check_out, pool));
  ASSERT_TRUE(check->forward({{42}}, {}, Output::LastLogits, check_out, pool));
  EXPECT_EQ(original_out, check_out);

  // Block ranges: a fork of a session on blocks [1, n) takes hidden states as the original would.
  if (n >= 2) {
    std::vector<float> hidden, a, b;
    auto head = session(0, 1), tail = session(1, n), tail_fork = session(1, n);
    ASSERT_TRUE(head->forward(prompt, {}, Output::Hidden, hidden, pool));
    ASSERT_TRUE(tail->forward({}, hidden, Output::LastLogits, a, pool));
    ASSERT_TRUE(tail_fork->copy_from(*tail));
    ASSERT_TRUE(head->forward({{5}}, {}, Output::Hidden, hidden, pool));
    ASSERT_TRUE(tail->forward({}, hidden, Output::LastLogits, a, pool));
    ASSERT_TRUE(tail_fork->forward({}, hidden, Output::LastLogits, b, pool));
    EXPECT_EQ(a, b);
    EXPECT_FALSE(tail_fork->copy_from(*fresh)) << "another block range";
  }
  // Too small a context for the original's positions.
  auto tiny = Session::create(*model, 0, n, 2);
  ASSERT_TRUE(tiny);
  EXPECT_FALSE((*tiny)->copy_from(*original));
}

TEST_P(Engine, BatchMatchesTokenByToken) {
  const uint32_t n = model->config().n_layer;
  auto batch = session(0, n), steps = session(0, n);
  std::vector<float> all, one;
  ASSERT_TRUE(batch->forward(prompt, {}, Output::AllLogits, all, pool));
  const uint32_t vocab = model->config().n_vocab;
  for (size_t t = 0; t < prompt.size(); ++t) {
    ASSERT_TRUE(steps->forward({{prompt[t]}}, {}, Output::LastLogits, one, pool));
    double worst = 0;
    for (uint32_t v = 0; v < vocab; ++v) worst = std::max(worst, std::abs(double(one[v]) - all[t * vocab + v]));
    EXPECT_LE(worst, 1e-3) << "token " << t;
  }
}

// The batch-invariance rule: K drafted tokens verified in one call (every row's logits, or hidden
// states passed between block ranges) get exactly the bits of K one-token steps. F16 is the type
// whose batched sums differ from single rows (ggml's GEMM); Q4_0 has its own repacked kernel.
class PerTokenSums : public Engine {};

TEST_P(PerTokenSums, DraftBatchGivesTheBitsOfSingleSteps) {
  const uint32_t n = model->config().n_layer;
  const uint32_t vocab = model->config().n_vocab;
  std::vector<int32_t> long_prompt;
  for (int i = 0; i < 21; ++i) long_prompt.push_back(prompt[i % prompt.size()] + i);  // a batched prefill
  const std::vector<int32_t> draft{29892, 306, 1024, 77, 5000, 12};
  auto steps = session(0, n), batch = session(0, n);
  auto a = session(0, 2), b = session(2, n);
  std::vector<float> out, all, hidden, split;
  ASSERT_TRUE(steps->forward(long_prompt, {}, Output::LastLogits, out, pool));
  ASSERT_TRUE(batch->forward(long_prompt, {}, Output::LastLogits, out, pool));
  ASSERT_TRUE(a->forward(long_prompt, {}, Output::Hidden, hidden, pool));
  ASSERT_TRUE(b->forward({}, hidden, Output::LastLogits, out, pool));
  constexpr auto kPerToken = BatchSums::kPerToken;
  ASSERT_TRUE(batch->forward(draft, {}, Output::AllLogits, all, pool, kPerToken));
  ASSERT_TRUE(a->forward(draft, {}, Output::Hidden, hidden, pool, kPerToken));
  ASSERT_TRUE(b->forward({}, hidden, Output::AllLogits, split, pool, kPerToken));
  ASSERT_EQ(all.size(), draft.size() * vocab);
  EXPECT_EQ(split, all);
  for (size_t t = 0; t < draft.size(); ++t) {
    ASSERT_TRUE(steps->forward({{draft[t]}}, {}, Output::LastLogits, out, pool));
    EXPECT_TRUE(std::equal(out.begin(), out.end(), all.begin() + t * vocab)) << "row " << t;
  }
  // Rolling the rejected rows back and going on gives the steps' bits too.
  ASSERT_TRUE(batch->rollback(3));
  ASSERT_TRUE(batch->forward({{draft[3]}}, {}, Output::LastLogits, out, pool));
  EXPECT_TRUE(std::equal(out.begin(), out.end(), all.begin() + 3 * vocab));
}

TEST_P(Engine, BadInputIsAnError) {
  const uint32_t n = model->config().n_layer;
  std::vector<float> out;
  auto s = session(0, n);
  EXPECT_FALSE(s->forward({{-1}}, {}, Output::LastLogits, out, pool));
  EXPECT_FALSE(s->forward({{static_cast<int32_t>(model->config().n_vocab)}}, {}, Output::LastLogits, out, pool));
  EXPECT_FALSE(s->forward({}, {}, Output::LastLogits, out, pool));
  std::vector<int32_t> too_long(65, 1);
  auto full = s->forward(too_long, {}, Output::LastLogits, out, pool);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::ResourceExhausted) << full.error().message;
  auto mid = session(1, n);
  EXPECT_FALSE(mid->forward(prompt, {}, Output::Hidden, out, pool));             // needs hidden states
  EXPECT_FALSE(mid->forward({}, std::vector<float>(7), Output::Hidden, out, pool));  // not n x n_embd
  auto head_less = session(0, 1);
  EXPECT_FALSE(head_less->forward(prompt, {}, Output::LastLogits, out, pool));
  EXPECT_FALSE(Session::create(*model, 2, 1, 16));
  EXPECT_FALSE(Session::create(*model, 0, n + 1, 16));
  EXPECT_EQ(s->kv_bytes(), size_t{2} * n * 64 * model->config().kv_dim() * 2);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, Engine,
                         ::testing::Values("synth-llama-q8_0.gguf", "synth-qwen2-q4_k_m.gguf", "synth-phi3-q8_0.gguf"),
                         [](const auto& info) {
                           std::string s = info.param.substr(0, info.param.size() - 5);
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

INSTANTIATE_TEST_SUITE_P(SharedModels, PerTokenSums,
                         ::testing::Values("synth-llama-f16.gguf", "synth-llama-q8_0.gguf", "synth-llama-q4_0.gguf",
                                           "synth-qwen2-q4_k_m.gguf", "synth-phi3-q8_0.gguf"),
                         [](const auto& info) {
                           std::string s = info.param.substr(0, info.param.size() - 5);
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(EngineErrors, UnsupportedArchitectureAndMissingTensors) {
  // The GPT-2 vocabulary file declares architecture "gpt2", which the engine does not run.
  auto gpt2 = Model::load(kShared + "/vocab/ggml-vocab-gpt-2.gguf");
  ASSERT_FALSE(gpt2);
  EXPECT_EQ(gpt2.error().code, ErrorCode::InvalidArgument) << gpt2.error().message;
  EXPECT_NE(gpt2.error().message.find("unsupported architecture 'gpt2'"), std::string::npos) << gpt2.error().message;

  // A llama header with every hyper-parameter but no tensors names the first tensor it lacks.
  gguf::Writer w;
  auto& md = w.metadata();
  md.set("general.architecture", gguf::Value::string("llama"));
  for (const char* key : {"llama.embedding_length", "llama.block_count", "llama.feed_forward_length"})
    md.set(key, gguf::Value::u32(64));
  md.set("llama.attention.head_count", gguf::Value::u32(8));
  const std::string path = ::testing::TempDir() + "/no-tensors-" + std::to_string(::getpid()) + ".gguf";
  ASSERT_TRUE(w.write_file(path, [](size_t, gguf::TensorSink&) -> Result<void> { return {}; }));
  auto empty = Model::load(path);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, ErrorCode::NotFound) << empty.error().message;
  EXPECT_NE(empty.error().message.find("tensor 'token_embd.weight' is missing"), std::string::npos)
      << empty.error().message;

  // A missing hyper-parameter is named too.
  md.erase("llama.block_count");
  ASSERT_TRUE(w.write_file(path, [](size_t, gguf::TensorSink&) -> Result<void> { return {}; }));
  auto no_blocks = Model::load(path);
  ASSERT_FALSE(no_blocks);
  EXPECT_EQ(no_blocks.error().code, ErrorCode::NotFound) << no_blocks.error().message;
  EXPECT_NE(no_blocks.error().message.find("'llama.block_count' is missing"), std::string::npos)
      << no_blocks.error().message;
  std::remove(path.c_str());
}

}  // namespace
}  // namespace omni::model
