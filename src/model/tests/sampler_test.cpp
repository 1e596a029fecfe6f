#include "model/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace omni::model {
namespace {

constexpr int kDraws = 200000;

Sampler make(const SamplingParams& p) {
  auto s = Sampler::create(p);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return std::move(s).value();
}

SamplingParams plain(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

std::vector<float> random_logits(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// What the sampler should draw from, derived independently of it: order the tokens best-first,
// apply top-k, then top-p and min-p on the temperature-1 softmax, then softmax(logit / T) over
// what is left. `logits` are already penalized.
std::vector<double> expected_probs(const std::vector<float>& logits, const SamplingParams& p) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < order.size()) order.resize(p.top_k);
  auto softmax1 = [&](const std::vector<int>& ids) {
    long double z = 0;
    for (int id : ids) z += std::exp(static_cast<long double>(logits[id]));
    std::vector<long double> out;
    for (int id : ids) out.push_back(std::exp(static_cast<long double>(logits[id])) / z);
    return out;
  };
  if (p.top_p < 1.0f) {
    auto probs = softmax1(order);
    long double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += probs[i];
      if (cum >= p.top_p) {
        order.resize(i + 1);
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    auto probs = softmax1(order);
    const long double p_max = *std::max_element(probs.begin(), probs.end());
    std::vector<int> kept;
    for (size_t i = 0; i < order.size(); ++i) {
      if (probs[i] >= p.min_p * p_max) kept.push_back(order[i]);
    }
    order = kept;
  }
  std::vector<double> out(logits.size(), 0.0);
  long double z = 0;
  for (int id : order) z += std::exp(static_cast<long double>(logits[id]) / p.temperature);
  for (int id : order) {
    out[id] =
        static_cast<double>(std::exp(static_cast<long double>(logits[id]) / p.temperature) / z);
  }
  return out;
}

std::vector<double> empirical(Sampler& s, const std::vector<float>& logits) {
  std::vector<double> freq(logits.size(), 0.0);
  for (int i = 0; i < kDraws; ++i) {
    const TokenId t = s.sample(logits);
    EXPECT_GE(t, 0);
    EXPECT_LT(static_cast<size_t>(t), logits.size());
    freq[t] += 1.0 / kDraws;
  }
  return freq;
}

// Tokens the sampler must never draw are never drawn; the others within 0.01 of their probability
// (the standard error at 200k draws is at most 0.0011).
void expect_matches(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (want[i] == 0.0) {
      EXPECT_EQ(got[i], 0.0) << "token " << i << " must be filtered out";
    } else {
      EXPECT_NEAR(got[i], want[i], 0.01) << "token " << i;
    }
  }
}

const std::vector<float> kLogits = {2.0f, 1.5f, 1.2f, 0.9f, 0.3f, 0.0f, -0.5f, -1.0f, -2.0f, 3.1f};

TEST(Sampler, GreedyIsArgmax) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const auto logits = random_logits(5000, seed);
    const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
    Sampler s = make(plain(0.0f));
    EXPECT_EQ(s.sample(logits), best);
  }
}

TEST(Sampler, GreedyTiesGoToLowestId) {
  const std::vector<float> logits = {0.0f, 1.0f, 5.0f, -1.0f, 5.0f, 5.0f};
  Sampler s = make(plain(-1.0f));
  EXPECT_EQ(s.sample(logits), 2);
}

TEST(Sampler, TopKOneIsArgmax) {
  const auto logits = random_logits(2000, 7);
  const auto best = std::max_element(logits.begin(), logits.end()) - logits.begin();
  SamplingParams p = plain(1.5f);
  p.top_k = 1;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    p.seed = seed;
    Sampler s = make(p);
    EXPECT_EQ(s.sample(logits), best);
  }
}

TEST(Sampler, TemperatureOnlyMatchesSoftmax) {
  for (float t : {0.7f, 1.0f, 1.6f}) {
    SamplingParams p = plain(t);
    p.seed = 11;
    Sampler s = make(p);
    expect_matches(empirical(s, kLogits), expected_probs(kLogits, p));
  }
}

TEST(Sampler, TopKRestrictsAndRenormalizes) {
  SamplingParams p = plain(1.3f);
  p.top_k = 4;
  Sampler s = make(p);
  expect_matches(empirical(s, kLogits), expected_probs(kLogits, p));
}

TEST(Sampler, TopKTiesKeepTheLowerIds) {
  // Three tokens tie for the third place; top-k 3 keeps the lowest id of them (2), never 4 or 5.
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f, 2.0f, 1.0f, 1.0f};
  SamplingParams p = plain(1.0f);
  p.top_k = 3;
  Sampler s = make(p);
  const auto want = expected_probs(logits, p);
  EXPECT_GT(want[2], 0.0);
  EXPECT_EQ(want[4], 0.0);
  expect_matches(empirical(s, logits), want);
}

TEST(Sampler, TopPRestrictsAndRenormalizes) {
  SamplingParams p = plain(1.0f);
  p.top_p = 0.8f;
  Sampler s = make(p);
  const auto want = expected_probs(kLogits, p);
  EXPECT_EQ(std::count(want.begin(), want.end(), 0.0), 6);  // the filter does bite here
  expect_matches(empirical(s, kLogits), want);
}

TEST(Sampler, MinPRestrictsAndRenormalizes) {
  SamplingParams p = plain(0.9f);
  p.min_p = 0.1f;
  Sampler s = make(p);
  const auto want = expected_probs(kLogits, p);
  EXPECT_EQ(std::count(want.begin(), want.end(), 0.0), 5);
  expect_matches(empirical(s, kLogits), want);
}

TEST(Sampler, FullChainMatches) {
  SamplingParams p;  // the defaults: T 0.8, top-k 40, top-p 0.95, min-p 0.05
  const auto logits = random_logits(60, 3);
  Sampler s = make(p);
  expect_matches(empirical(s, logits), expected_probs(logits, p));

  p.temperature = 0.5f;
  p.top_k = 6;
  p.top_p = 0.9f;
  p.min_p = 0.02f;
  Sampler s2 = make(p);
  expect_matches(empirical(s2, kLogits), expected_probs(kLogits, p));
}

// The penalties as the test computes them: CTRL repetition, then OpenAI frequency/presence.
std::vector<float> penalized(std::vector<float> logits, const std::map<int, int>& counts,
                             const SamplingParams& p) {
  for (const auto& [id, count] : counts) {
    float& l = logits[id];
    l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
    l -= count * p.frequency_penalty + p.presence_penalty;
  }
  return logits;
}

TEST(Sampler, PenaltiesChangeExactlyThePenalizedLogits) {
  SamplingParams p = plain(1.0f);
  p.repeat_penalty = 1.4f;
  p.frequency_penalty = 0.3f;
  p.presence_penalty = 0.2f;
  Sampler s = make(p);
  // Token 9 (positive logit) twice, 6 (negative) and 2 (positive) once.
  for (TokenId t : {9, 6, 9, 2}) s.accept(t);
  const auto want = expected_probs(penalized(kLogits, {{9, 2}, {6, 1}, {2, 1}}, p), plain(1.0f));
  const auto unpenalized = expected_probs(kLogits, plain(1.0f));
  EXPECT_GT(std::abs(want[9] - unpenalized[9]), 0.1);  // the penalty is visible at this tolerance
  expect_matches(empirical(s, kLogits), want);
}

TEST(Sampler, PenaltyWindowForgetsOldTokens) {
  SamplingParams p = plain(1.0f);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s = make(p);
  for (TokenId t : {9, 0, 1}) s.accept(t);  // 9 has left the window
  const auto want = expected_probs(penalized(kLogits, {{0, 1}, {1, 1}}, p), plain(1.0f));
  expect_matches(empirical(s, kLogits), want);
}

TEST(Sampler, GreedyAppliesPenaltiesOnlyWhenSet) {
  // Token 9 is the argmax; penalized by 2 it falls below token 0 (3.1 / 2 < 2.0).
  SamplingParams p = plain(0.0f);
  Sampler unpenalized = make(p);
  unpenalized.accept(9);
  EXPECT_EQ(unpenalized.sample(kLogits), 9);

  p.repeat_penalty = 2.0f;
  Sampler s = make(p);
  s.accept(9);
  EXPECT_EQ(s.sample(kLogits), 0);
  s.reset();
  EXPECT_EQ(s.sample(kLogits), 9);
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDifferent) {
  const auto logits = random_logits(1000, 5);
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s = make(p);
    std::vector<TokenId> out;
    for (int i = 0; i < 500; ++i) out.push_back(s.sample(logits));
    return out;
  };
  const auto a = run(42);
  EXPECT_EQ(a, run(42));
  EXPECT_NE(a, run(43));
  EXPECT_GT(std::set<TokenId>(a.begin(), a.end()).size(), 20u);  // really random

  p.seed = 42;
  Sampler s = make(p);
  for (int i = 0; i < 100; ++i) s.sample(logits);
  s.reset();
  std::vector<TokenId> again;
  for (int i = 0; i < 500; ++i) again.push_back(s.sample(logits));
  EXPECT_EQ(a, again);
}

TEST(Sampler, RejectsBadParams) {
  auto expect_error = [](SamplingParams p, const std::string& name) {
    auto s = Sampler::create(p);
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.error().code, ErrorCode::InvalidArgument) << name;
    EXPECT_NE(s.error().message.find(name), std::string::npos) << s.error().message;
  };
  SamplingParams p;
  p.top_p = 1.5f;
  expect_error(p, "top_p");
  p = {};
  p.min_p = -0.1f;
  expect_error(p, "min_p");
  p = {};
  p.repeat_penalty = 0.0f;
  expect_error(p, "repeat_penalty");
  p = {};
  p.temperature = std::nanf("");
  expect_error(p, "temperature");
  p = {};
  p.repeat_last_n = -2;
  expect_error(p, "repeat_last_n");
}

TEST(Sampler, TopLogprobsMatchLongDoubleLogSoftmax) {
  for (float offset : {0.0f, 5000.0f, -3000.0f}) {  // exp() of these would overflow or vanish
    auto logits = random_logits(4000, 9);
    for (float& l : logits) l += offset;
    // A three-way tie for the top, above everything else.
    const float best = *std::max_element(logits.begin(), logits.end()) + 1.0f;
    logits[17] = logits[3000] = logits[100] = best;
    long double m = -INFINITY;
    for (float l : logits) m = std::max<long double>(m, l);
    long double z = 0;
    for (float l : logits) z += std::exp(static_cast<long double>(l) - m);
    const long double log_z = m + std::log(z);

    std::vector<int> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return logits[a] > logits[b]; });

    const auto top = top_logprobs(logits, 10);
    ASSERT_EQ(top.size(), 10u);
    EXPECT_EQ(top[0].first, 17);
    EXPECT_EQ(top[1].first, 100);
    EXPECT_EQ(top[2].first, 3000);
    for (size_t i = 0; i < top.size(); ++i) {
      EXPECT_EQ(top[i].first, order[i]);
      EXPECT_NEAR(top[i].second, static_cast<double>(logits[order[i]] - log_z), 1e-5);
    }
  }
}

TEST(Sampler, TopLogprobsSmallVocabAndZeroK) {
  const std::vector<float> logits = {0.0f, std::log(3.0f)};
  const auto all = top_logprobs(logits, 5);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 1);
  EXPECT_NEAR(all[0].second, std::log(0.75), 1e-6);
  EXPECT_NEAR(all[1].second, std::log(0.25), 1e-6);
  EXPECT_TRUE(top_logprobs(logits, 0).empty());
}

// The reference: the stop occurrence that ends first (the longest of those) cuts the text.
struct Expected {
  std::string text;
  bool stopped;
};
Expected reference_stop(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best = 0;
    for (const std::string& s : stops) {
      if (!s.empty() && s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        best = std::max(best, s.size());
      }
    }
    if (best > 0) return {text.substr(0, end - best), true};
  }
  return {text, false};
}

// Feeds `text` cut at every subset of its positions and checks each stream against the reference:
// what is emitted is always a prefix of the final output, what is held is only ever the start of a
// stop string, and the whole output is the reference.
void check_all_splits(const std::string& text, const std::vector<std::string>& stops) {
  ASSERT_LE(text.size(), 16u);
  const Expected want = reference_stop(text, stops);
  const uint32_t n_cuts = static_cast<uint32_t>(text.size()) - 1;
  for (uint32_t mask = 0; mask < (1u << n_cuts); ++mask) {
    StopDetector d(stops);
    std::string emitted;
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      if (i + 1 < text.size() && !(mask & (1u << i))) continue;
      const std::string piece = text.substr(start, i + 1 - start);
      start = i + 1;
      emitted += d.feed(piece);
      ASSERT_EQ(want.text.compare(0, emitted.size(), emitted), 0)
          << "emitted '" << emitted << "' for '" << text << "' mask " << mask;
      if (!d.stopped()) {
        const std::string held = text.substr(emitted.size(), start - emitted.size());
        const bool starts_a_stop =
            held.empty() || std::any_of(stops.begin(), stops.end(), [&](auto& s) {
              return s.size() > held.size() && s.compare(0, held.size(), held) == 0;
            });
        ASSERT_TRUE(starts_a_stop) << "held '" << held << "' needlessly";
      }
    }
    if (!d.stopped()) emitted += d.flush();
    ASSERT_EQ(emitted, want.text) << "text '" << text << "' mask " << mask;
    ASSERT_EQ(d.stopped(), want.stopped);
    if (d.stopped()) {
      EXPECT_EQ(d.feed("more"), "");
    }
  }
}

TEST(StopDetector, CutsBeforeTheStopStringOverAllSplits) {
  check_all_splits("ab<|im_end|>cd", {"<|im_end|>"});
  check_all_splits("Hi</s>x</s>", {"</s>", "<|eot_id|>"});
}

TEST(StopDetector, SelfOverlappingStop) {
  check_all_splits("abcabcabdxy", {"abcabd"});
  check_all_splits("aaaab", {"aab"});
}

TEST(StopDetector, EarliestEndingStopWins) {
  EXPECT_EQ(reference_stop("xabcz", {"abc", "b"}).text, "xa");  // "b" completes first
  check_all_splits("xabcz", {"abc", "b"});
  EXPECT_EQ(reference_stop("xabcz", {"bc", "abc"}).text, "x");  // same end: the longer one
  check_all_splits("xabcz", {"bc", "abc"});
}

TEST(StopDetector, NoStopPassesEverything) {
  check_all_splits("hello world", {"worlds", "lo!", ""});
  check_all_splits("plain text", {});
  StopDetector d({"STOP"});
  EXPECT_EQ(d.feed("abc"), "abc");  // nothing here can start "STOP": no delay
  EXPECT_EQ(d.feed("xST"), "x");
  EXPECT_EQ(d.flush(), "ST");
}

}  // namespace
}  // namespace omni::model
