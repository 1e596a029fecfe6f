// Embeddings against computations made another way: the pooling against the residual stream of a
// plain forward call, RMS-normalized, pooled and scaled here in double precision; and the final
// hidden state itself against llama.cpp (shared/reference): its last row through the output matrix,
// computed here, gives the reference's log-probabilities of the next token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/matmul.h"
#include "model/embedding.h"
#include "model/model.h"

namespace omni::model {
namespace {

const std::string kShared = OMNI_SHARED_DIR;

std::unique_ptr<Model> load(const std::string& name) {
  auto m = Model::load(kShared + "/models/" + name);
  EXPECT_TRUE(m) << m.error().message;
  return m ? std::move(*m) : nullptr;
}

// The final hidden state of each position: the residual stream of one forward call over all the
// tokens, RMS-normalized with the model's output norm here.
std::vector<std::vector<double>> final_states(const Model& model, const std::vector<int32_t>& tokens,
                                              kernels::ThreadPool& pool) {
  const ModelConfig& c = model.config();
  auto session = Session::create(model, 0, c.n_layer, static_cast<uint32_t>(tokens.size()));
  EXPECT_TRUE(session);
  std::vector<std::vector<double>> rows;
  std::vector<float> all;
  auto r = (*session)->forward(tokens, {}, Output::Hidden, all, pool);
  EXPECT_TRUE(r) << r.error().message;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const float* h = all.data() + t * c.n_embd;
    double ms = 0;
    for (uint32_t i = 0; i < c.n_embd; ++i) ms += double{h[i]} * h[i];
    const double inv = 1.0 / std::sqrt(ms / c.n_embd + c.rms_eps);
    std::vector<double> row(c.n_embd);
    for (uint32_t i = 0; i < c.n_embd; ++i) row[i] = h[i] * inv * model.weights().output_norm.data[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<double> unit(std::vector<double> v) {
  double n = 0;
  for (double x : v) n += x * x;
  for (double& x : v) x /= std::sqrt(n);
  return v;
}

void expect_near(const std::vector<float>& got, const std::vector<double>& want, double tolerance) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
  EXPECT_LT(worst, tolerance);
}

class Embedding : public ::testing::TestWithParam<std::string> {};

TEST_P(Embedding, PoolingsEqualTheResidualStreamNormalizedAndPooledIndependently) {
  auto model = load(GetParam());
  ASSERT_TRUE(model);
  kernels::ThreadPool pool(2);
  const std::vector<int32_t> tokens{1, 450, 4996, 17354, 1701, 29916, 432, 975, 278, 17366, 11203};
  const auto rows = final_states(*model, tokens, pool);
  const uint32_t d = model->config().n_embd;
  std::vector<double> mean(d, 0.0);
  for (const auto& r : rows)
    for (uint32_t i = 0; i < d; ++i) mean[i] += r[i] / rows.size();
  auto pooled = pooling_of(*model);
  ASSERT_TRUE(pooled) << pooled.error().message;
  EXPECT_EQ(*pooled, Pooling::Mean) << "a generative model declares no pooling: mean";
  // In one chunk embed() sees the same rows (float sums here vs double: 1e-6); in chunks of 4 the
  // batches' sums round differently (a batch's split changes the last bits, which the layers
  // amplify: about 3e-4 of a unit vector on these random weights).
  for (const auto& [chunk, tolerance] : {std::pair{512u, 1e-6}, std::pair{4u, 2e-3}}) {
    SCOPED_TRACE(chunk);
    auto e = embed(*model, tokens, Pooling::Mean, true, 64, pool, chunk);
    ASSERT_TRUE(e) << e.error().message;
    expect_near(*e, unit(mean), tolerance);
    double n = 0;
    for (float x : *e) n += double{x} * x;
    EXPECT_NEAR(n, 1.0, 1e-5);
    auto raw = embed(*model, tokens, Pooling::Mean, false, 64, pool, chunk);
    ASSERT_TRUE(raw);
    double scale = 0;
    for (double x : mean) scale = std::max(scale, std::abs(x));
    expect_near(*raw, mean, tolerance * 10 * scale);
    auto first = embed(*model, tokens, Pooling::First, true, 64, pool, chunk);
    ASSERT_TRUE(first);
    expect_near(*first, unit(rows.front()), tolerance);
    auto last = embed(*model, tokens, Pooling::Last, true, 64, pool, chunk);
    ASSERT_TRUE(last);
    expect_near(*last, unit(rows.back()), tolerance);
  }
  // Different texts, different vectors (the pooling is not constant).
  auto other = embed(*model, std::vector<int32_t>{1, 3681, 263}, Pooling::Mean, true, 64, pool);
  auto again = embed(*model, tokens, Pooling::Mean, true, 64, pool);
  ASSERT_TRUE(other && again);
  double cos = 0;
  for (uint32_t i = 0; i < d; ++i) cos += double{(*other)[i]} * (*again)[i];
  EXPECT_LT(cos, 0.999);
}

INSTANTIATE_TEST_SUITE_P(Models, Embedding, ::testing::Values("synth-llama-q8_0.gguf", "synth-qwen2-q8_0.gguf"),
                         [](const auto& info) {
                           std::string n = info.param.substr(6, info.param.size() - 11);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// The state embed() pools is the head's input: the last position's, multiplied here by the output
// matrix (dequantized rows, double sums), gives llama.cpp's log-probabilities of the next token.
TEST(EmbeddingReference, LastStateThroughTheOutputMatrixGivesTheReferenceLogprobs) {
  auto model = load("synth-llama-f16.gguf");
  ASSERT_TRUE(model);
  std::ifstream in(kShared + "/reference/synth-llama-f16.json");
  ASSERT_TRUE(in);
  const auto reference = nlohmann::json::parse(in);
  kernels::ThreadPool pool(2);
  const ModelConfig& c = model->config();
  for (const auto& p : reference["prompts"]) {
    const auto tokens = p["prompt_tokens"].get<std::vector<int32_t>>();
    auto e = embed(*model, tokens, Pooling::Last, false, 4096, pool);
    ASSERT_TRUE(e) << e.error().message;
    std::vector<double> logits(c.n_vocab);
    std::vector<float> row(c.n_embd);
    for (uint32_t v = 0; v < c.n_vocab; ++v) {
      kernels::dequantize_row_of(model->weights().output, v, row.data());
      double dot = 0;
      for (uint32_t i = 0; i < c.n_embd; ++i) dot += double{row[i]} * (*e)[i];
      logits[v] = dot;
    }
    const double max = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max);
    const double log_z = max + std::log(sum);
    for (const auto& top : p["steps"][0]["top"])
      // llama.cpp rounds the activations to F16 for an F16 matrix; these sums are in double.
      EXPECT_NEAR(logits[top[0].get<size_t>()] - log_z, top[1].get<double>(), 5e-3) << p["prompt"];
  }
}

TEST(EmbeddingErrors, BadInputIsAnError) {
  auto model = load("synth-llama-q8_0.gguf");
  ASSERT_TRUE(model);
  kernels::ThreadPool pool(1);
  EXPECT_EQ(embed(*model, {}, Pooling::Mean, true, 64, pool).error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(embed(*model, std::vector<int32_t>{1, 999999}, Pooling::Mean, true, 64, pool).error().code,
            ErrorCode::InvalidArgument);
  EXPECT_EQ(embed(*model, std::vector<int32_t>(65, 1), Pooling::Mean, true, 64, pool).error().code,
            ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace omni::model
