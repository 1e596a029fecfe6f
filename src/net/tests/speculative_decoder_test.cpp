// SpeculativeDecoder with sampling keeps the target's distribution end to end: a real target
// (synth-llama Q8_0) and a real draft that often disagrees with it (its Q4_0 copy), the sampler
// keeping the top 8 tokens; at one fixed position, the first token of a verification round, over
// many seeds, follows the target's own distribution there (chi-square), while the draft's
// distribution is far from it (so a decoder that kept its drafts unjudged would fail).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <vector>

#include "model/model.h"
#include "model/sampler.h"
#include "net/pipeline.h"
#include "net/speculative_decoder.h"

namespace omni::net {
namespace {

const std::string kShared = OMNI_SHARED_DIR;

// 99.9th percentile of chi-square with 7 degrees of freedom (8 kept tokens).
constexpr double kChi7 = 24.32;

double chi_square(const std::map<model::TokenId, int>& counts, const std::vector<model::TokenProb>& p, int n) {
  double chi = 0;
  for (const model::TokenProb& t : p) {
    const double expected = t.p * n;
    const auto it = counts.find(t.id);
    const double seen = it == counts.end() ? 0 : it->second;
    chi += (seen - expected) * (seen - expected) / expected;
  }
  return chi;
}

TEST(SpeculativeDecoder, SampledTokensFollowTheTargetDistribution) {
  const std::string target_path = kShared + "/models/synth-llama-q8_0.gguf";
  const std::string draft_path = kShared + "/models/synth-llama-q4_0.gguf";
  if (!std::filesystem::exists(target_path) || !std::filesystem::exists(draft_path))
    GTEST_SKIP() << "shared models missing";
  auto target = model::Model::load(target_path);
  ASSERT_TRUE(target) << target.error().message;
  auto draft = model::Model::load(draft_path);
  ASSERT_TRUE(draft) << draft.error().message;
  kernels::ThreadPool pool(1);
  constexpr uint32_t kCtx = 64;
  auto pipeline = make_local_pipeline(**target, kCtx, pool);
  ASSERT_TRUE(pipeline) << pipeline.error().message;

  model::SamplingParams params;
  params.temperature = 1.0f;
  params.top_k = 8;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  // The context: the target holds `held`; `next` is the sampled token not yet sent.
  const std::vector<int32_t> held{1, 450, 4996, 17354, 1701};
  const int32_t next = 29871;
  std::vector<float> logits;
  ASSERT_TRUE((*pipeline)->forward(held, logits));

  // The target's distribution at the tested position (after `next`), and the draft's.
  auto p_sampler = model::Sampler::create(params);
  ASSERT_TRUE(p_sampler);
  std::vector<int32_t> with_next = held;
  with_next.push_back(next);
  for (int32_t t : with_next) p_sampler->accept(t);
  ASSERT_TRUE((*pipeline)->forward(std::span<const int32_t>(&next, 1), logits));
  const std::vector<model::TokenProb> p = p_sampler->distribution(logits);
  ASSERT_TRUE((*pipeline)->rollback(1));
  auto draft_session = model::Session::create(**draft, 0, (*draft)->config().n_layer, kCtx);
  ASSERT_TRUE(draft_session);
  std::vector<float> draft_logits;
  ASSERT_TRUE((*draft_session)->forward(with_next, {}, model::Output::LastLogits, draft_logits, pool));
  const std::vector<model::TokenProb> q = p_sampler->distribution(draft_logits);
  ASSERT_EQ(p.size(), 8u);

  constexpr int kTrials = 800;
  std::map<model::TokenId, int> counts;
  uint64_t drafted = 0, accepted = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    params.seed = 1000 + static_cast<uint64_t>(trial);
    auto sampler = model::Sampler::create(params);
    ASSERT_TRUE(sampler);
    for (int32_t t : with_next) sampler->accept(t);
    DraftOptions options;
    options.draft = draft->get();
    options.max_draft = 1;
    options.adapt = false;
    auto decoder = SpeculativeDecoder::create(**pipeline, **target, *sampler, options, kCtx, pool);
    ASSERT_TRUE(decoder) << decoder.error().message;
    ASSERT_TRUE((*decoder)->resume(with_next));
    auto produced = (*decoder)->next(2);
    ASSERT_TRUE(produced) << produced.error().message;
    ASSERT_GE(produced->size(), 1u);
    ++counts[(*produced)[0].id];
    drafted += (*decoder)->stats().drafted;
    accepted += (*decoder)->stats().accepted;
    // Back to `held` for the next trial: the round left the target `next` and what it kept.
    ASSERT_TRUE((*pipeline)->rollback(static_cast<uint32_t>(produced->size())));
  }
  ASSERT_EQ(drafted, static_cast<uint64_t>(kTrials));  // every round verified a draft
  EXPECT_GT(accepted, 0u);
  EXPECT_LT(accepted, drafted);  // and rejections happened: the residual was drawn from too
  const double chi = chi_square(counts, p, kTrials);
  std::printf("chi-square of the sampled tokens against the target's distribution: %.2f (bound %.2f); "
              "%llu of %llu drafts accepted\n",
              chi, kChi7, static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(drafted));
  EXPECT_LT(chi, kChi7);

  // The draft's own distribution is far from the target's: taking its tokens would fail.
  std::map<model::TokenId, int> draft_counts;
  for (const model::TokenProb& t : q) draft_counts[t.id] = static_cast<int>(t.p * kTrials + 0.5);
  const double draft_chi = chi_square(draft_counts, p, kTrials);
  std::printf("chi-square of the draft's expected counts against it: %.2f\n", draft_chi);
  EXPECT_GT(draft_chi, kChi7);
}

}  // namespace
}  // namespace omni::net
