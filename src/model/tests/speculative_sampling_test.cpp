// The rejection rule keeps the target's distribution: drafts drawn from q, judged against p, come
// out distributed as p (chi-square over many seeds), whatever q is.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "model/speculative_sampling.h"

namespace omni::model {
namespace {

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Pearson's chi-square of `counts` against n draws from `p`.
double chi_square(const std::vector<int>& counts, const std::vector<double>& p, int n) {
  double chi = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double expected = p[i] * n;
    chi += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi;
}

std::vector<TokenProb> as_distribution(const std::vector<double>& p) {
  std::vector<TokenProb> d;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) d.push_back({static_cast<TokenId>(i), p[i]});
  return d;
}

// 99.9th percentile of chi-square with 7 degrees of freedom: a correct rule fails 1 run in 1000.
constexpr double kChi7 = 24.32;

struct Case {
  const char* name;
  std::vector<double> p, q;
};

TEST(SpeculativeSampling, OutputFollowsTheTargetDistribution) {
  const std::vector<Case> cases{
      {"close draft", {0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02}, {0.25, 0.25, 0.10, 0.10, 0.12, 0.08, 0.06, 0.04}},
      {"far draft", {0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02}, {0.02, 0.05, 0.08, 0.10, 0.10, 0.15, 0.20, 0.30}},
      {"draft misses tokens", {0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02}, {0.5, 0.5, 0, 0, 0, 0, 0, 0}},
      {"one-hot draft (lookup)", {0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02}, {0, 0, 0, 1, 0, 0, 0, 0}},
  };
  constexpr int kDraws = 50000;
  for (const Case& c : cases) {
    const auto p = as_distribution(c.p), q = as_distribution(c.q);
    std::vector<int> counts(c.p.size(), 0);
    int accepted = 0;
    for (int seed = 0; seed < kDraws; ++seed) {
      std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7919 + 17);
      const TokenId x = draw_from(q, uniform01(rng));
      const double u1 = uniform01(rng);
      const SpeculativeVerdict v = speculative_verdict(p, q, x, u1, uniform01(rng));
      ++counts[static_cast<size_t>(v.token)];
      accepted += v.accepted;
    }
    EXPECT_LT(chi_square(counts, c.p, kDraws), kChi7) << c.name;
    // The acceptance rate is sum(min(p, q)): a check that the rule does accept.
    double overlap = 0;
    for (size_t i = 0; i < c.p.size(); ++i) overlap += std::min(c.p[i], c.q[i]);
    EXPECT_NEAR(static_cast<double>(accepted) / kDraws, overlap, 0.01) << c.name;
  }
}

// The same statistic catches a wrong rule: keeping every draft gives q, not p.
TEST(SpeculativeSampling, TheTestCanFail) {
  const std::vector<double> pv{0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02};
  const std::vector<double> qv{0.25, 0.25, 0.10, 0.10, 0.12, 0.08, 0.06, 0.04};
  const auto q = as_distribution(qv);
  std::vector<int> counts(pv.size(), 0);
  constexpr int kDraws = 50000;
  for (int seed = 0; seed < kDraws; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    ++counts[static_cast<size_t>(draw_from(q, uniform01(rng)))];
  }
  EXPECT_GT(chi_square(counts, pv, kDraws), kChi7);
}

TEST(SpeculativeSampling, DrawFromFollowsCumulativeProbabilities) {
  const std::vector<TokenProb> d{{5, 0.25}, {9, 0.5}, {2, 0.25}};
  EXPECT_EQ(draw_from(d, 0.0), 5);
  EXPECT_EQ(draw_from(d, 0.24), 5);
  EXPECT_EQ(draw_from(d, 0.25), 9);
  EXPECT_EQ(draw_from(d, 0.74), 9);
  EXPECT_EQ(draw_from(d, 0.99), 2);
}

}  // namespace
}  // namespace omni::model
