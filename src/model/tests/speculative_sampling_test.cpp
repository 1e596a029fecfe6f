// The rejection rule keeps the target's distribution: drafts drawn from q, judged against p, come
// out distributed as p (chi-square over many seeds), whatever q is.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <span>
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

using Rule = SpeculativeVerdict (*)(std::span<const TokenProb> p, std::span<const TokenProb> q, TokenId x,
                                    double u_accept, double u_residual);

struct Outcome {
  double chi = 0;         // of the produced tokens against p
  double acceptance = 0;  // share of drafts kept
};

// kDraws drafts from q, each from its own seed, judged by `rule` against p.
Outcome run_rule(Rule rule, const Case& c) {
  constexpr int kDraws = 50000;
  const auto p = as_distribution(c.p), q = as_distribution(c.q);
  std::vector<int> counts(c.p.size(), 0);
  int accepted = 0;
  for (int seed = 0; seed < kDraws; ++seed) {
    std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7919 + 17);
    const TokenId x = draw_from(q, uniform01(rng));
    const double u1 = uniform01(rng);
    const SpeculativeVerdict v = rule(p, q, x, u1, uniform01(rng));
    ++counts[static_cast<size_t>(v.token)];
    accepted += v.accepted;
  }
  return {chi_square(counts, c.p, kDraws), static_cast<double>(accepted) / kDraws};
}

const std::vector<double> kP{0.30, 0.20, 0.15, 0.10, 0.10, 0.08, 0.05, 0.02};
const std::vector<Case> kCases{
    {"close draft", kP, {0.25, 0.25, 0.10, 0.10, 0.12, 0.08, 0.06, 0.04}},
    {"far draft", kP, {0.02, 0.05, 0.08, 0.10, 0.10, 0.15, 0.20, 0.30}},
    {"draft misses tokens", kP, {0.5, 0.5, 0, 0, 0, 0, 0, 0}},
    {"one-hot draft (lookup)", kP, {0, 0, 0, 1, 0, 0, 0, 0}},
};

TEST(SpeculativeSampling, OutputFollowsTheTargetDistribution) {
  for (const Case& c : kCases) {
    const Outcome o = run_rule(speculative_verdict, c);
    EXPECT_LT(o.chi, kChi7) << c.name;
    // The acceptance rate is sum(min(p, q)): a check that the rule does accept.
    double overlap = 0;
    for (size_t i = 0; i < c.p.size(); ++i) overlap += std::min(c.p[i], c.q[i]);
    EXPECT_NEAR(o.acceptance, overlap, 0.01) << c.name;
  }
}

// Wrong rules, each a plausible mistake, and the same statistic rejecting them on the far draft.
SpeculativeVerdict keep_every_draft(std::span<const TokenProb>, std::span<const TokenProb>, TokenId x, double,
                                    double) {
  return {true, x};
}
// Rejection redraws from p instead of the residual max(0, p - q): the tokens q favours come out
// too often.
SpeculativeVerdict redraw_from_target(std::span<const TokenProb> p, std::span<const TokenProb> q, TokenId x,
                                      double u_accept, double u_residual) {
  SpeculativeVerdict v = speculative_verdict(p, q, x, u_accept, u_residual);
  if (!v.accepted) v.token = draw_from(p, u_residual);
  return v;
}
// Acceptance with probability p(x) rather than min(1, p(x) / q(x)), the residual right.
SpeculativeVerdict accept_with_target_probability(std::span<const TokenProb> p, std::span<const TokenProb> q,
                                                  TokenId x, double u_accept, double u_residual) {
  double px = 0;
  for (const TokenProb& t : p)
    if (t.id == x) px = t.p;
  if (u_accept < px) return {true, x};
  std::vector<TokenProb> residual;
  for (const TokenProb& t : p) {
    double qt = 0;
    for (const TokenProb& d : q)
      if (d.id == t.id) qt = d.p;
    if (t.p > qt) residual.push_back({t.id, t.p - qt});
  }
  return {false, draw_from(residual, u_residual)};
}

TEST(SpeculativeSampling, TheTestRejectsWrongRules) {
  const Case& far = kCases[1];
  EXPECT_GT(run_rule(keep_every_draft, far).chi, kChi7);
  EXPECT_GT(run_rule(redraw_from_target, far).chi, kChi7);
  EXPECT_GT(run_rule(accept_with_target_probability, far).chi, kChi7);
  // And the close draft, where the mistakes matter less, still shows the first two.
  EXPECT_GT(run_rule(keep_every_draft, kCases[0]).chi, kChi7);
  EXPECT_GT(run_rule(redraw_from_target, kCases[0]).chi, kChi7);
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
