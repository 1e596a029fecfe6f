#include "model/sampler.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numeric>

namespace omni::model {
namespace {

// Higher logit first; equal logits go to the lower id, so every order below is deterministic.
template <class C>
bool better(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

TokenId argmax(std::span<const float> logits) {
  size_t best = 0;
  float best_logit = logits[0];
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > best_logit) {
      best = i;
      best_logit = logits[i];
    }
  }
  return static_cast<TokenId>(best);
}

// A uniform double in [0, 1) from the top 53 bits, the same on every standard library (unlike
// std::uniform_real_distribution).
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

Result<Sampler> Sampler::create(const SamplingParams& p) {
  auto bad = [](const char* what) {
    return Error{ErrorCode::InvalidArgument, std::string("sampling parameter ") + what + " is out of range"};
  };
  if (std::isnan(p.temperature)) return bad("temperature");
  if (!(p.top_p >= 0.0f && p.top_p <= 1.0f)) return bad("top_p (must be in [0, 1])");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return bad("min_p (must be in [0, 1])");
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) {
    return bad("repeat_penalty (must be > 0)");
  }
  if (p.repeat_last_n < -1) return bad("repeat_last_n (must be >= -1)");
  if (!std::isfinite(p.frequency_penalty)) return bad("frequency_penalty");
  if (!std::isfinite(p.presence_penalty)) return bad("presence_penalty");
  return Sampler(p);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::reset() {
  window_.clear();
  counts_.clear();
  rng_.seed(params_.seed);
}

void Sampler::accept(TokenId token) {
  if (params_.repeat_last_n == 0) return;
  window_.push_back(token);
  ++counts_[token];
  if (params_.repeat_last_n > 0 && window_.size() > static_cast<size_t>(params_.repeat_last_n)) {
    const TokenId old = window_.front();
    window_.pop_front();
    if (--counts_[old] == 0) counts_.erase(old);
  }
}

bool Sampler::penalties_active() const {
  return params_.repeat_last_n != 0 &&
         (params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
          params_.presence_penalty != 0.0f);
}

TokenId Sampler::sample(std::span<const float> logits) {
  assert(!logits.empty());
  if (penalties_active()) logits = penalized(logits);
  if (params_.temperature <= 0.0f) return argmax(logits);
  select_candidates(logits);
  keep_top_p();
  keep_min_p();
  return draw();
}

std::vector<TokenProb> Sampler::distribution(std::span<const float> logits) {
  assert(!logits.empty());
  if (penalties_active()) logits = penalized(logits);
  if (params_.temperature <= 0.0f) return {{argmax(logits), 1.0}};
  select_candidates(logits);
  keep_top_p();
  keep_min_p();
  const double total = softmax_weights();
  std::vector<TokenProb> out(candidates_.size());
  for (size_t i = 0; i < candidates_.size(); ++i) out[i] = {candidates_[i].id, weights_[i] / total};
  return out;
}

double Sampler::uniform() { return uniform01(rng_); }

std::span<const float> Sampler::penalized(std::span<const float> logits) {
  penalized_.assign(logits.begin(), logits.end());
  for (const auto& [id, count] : counts_) {
    if (id < 0 || static_cast<size_t>(id) >= penalized_.size()) continue;
    float& logit = penalized_[id];
    if (params_.repeat_penalty != 1.0f) {
      logit = logit <= 0.0f ? logit * params_.repeat_penalty : logit / params_.repeat_penalty;
    }
    logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
  }
  return penalized_;
}

// All tokens in id order, or with top-k the k best, best first. The k best are kept in a heap
// whose root is the worst of them: most tokens lose one comparison with the root and cost nothing
// more, so a 150k vocabulary takes one pass.
void Sampler::select_candidates(std::span<const float> logits) {
  candidates_.clear();
  const int k = params_.top_k;
  if (k <= 0 || static_cast<size_t>(k) >= logits.size()) {
    for (size_t i = 0; i < logits.size(); ++i) {
      candidates_.push_back({static_cast<TokenId>(i), logits[i]});
    }
    return;
  }
  auto cmp = [](const Candidate& a, const Candidate& b) { return better(a, b); };
  for (size_t i = 0; i < logits.size(); ++i) {
    const Candidate c{static_cast<TokenId>(i), logits[i]};
    if (candidates_.size() < static_cast<size_t>(k)) {
      candidates_.push_back(c);
      std::push_heap(candidates_.begin(), candidates_.end(), cmp);
    } else if (better(c, candidates_.front())) {
      std::pop_heap(candidates_.begin(), candidates_.end(), cmp);
      candidates_.back() = c;
      std::push_heap(candidates_.begin(), candidates_.end(), cmp);
    }
  }
  std::sort_heap(candidates_.begin(), candidates_.end(), cmp);
}

// Keeps the smallest best-first prefix whose probability (at temperature 1) reaches top_p. The
// prefix is found block by block (nth_element, then a sort of the block), so only about as many
// tokens as the nucleus holds get sorted.
void Sampler::keep_top_p() {
  if (params_.top_p >= 1.0f) return;
  float max_logit = candidates_.front().logit;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  double total = 0.0;
  for (const Candidate& c : candidates_) total += std::exp(c.logit - max_logit);
  const double target = params_.top_p * total;

  auto cmp = [](const Candidate& a, const Candidate& b) { return better(a, b); };
  const auto first = candidates_.begin();
  double cumulative = 0.0;
  size_t sorted = 0;
  for (size_t block = 64; sorted < candidates_.size(); block *= 4) {
    const size_t end = std::min(candidates_.size(), sorted + block);
    if (end < candidates_.size()) {
      std::nth_element(first + sorted, first + end, candidates_.end(), cmp);
    }
    std::sort(first + sorted, first + end, cmp);
    for (; sorted < end; ++sorted) {
      cumulative += std::exp(candidates_[sorted].logit - max_logit);
      if (cumulative >= target) {
        candidates_.resize(sorted + 1);
        return;
      }
    }
  }
}

// p_i >= min_p * p_max  <=>  logit_i >= max_logit + log(min_p).
void Sampler::keep_min_p() {
  if (params_.min_p <= 0.0f) return;
  float max_logit = candidates_.front().logit;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  const float threshold = max_logit + std::log(params_.min_p);
  std::erase_if(candidates_, [&](const Candidate& c) { return c.logit < threshold; });
}

// exp((logit - max) / temperature) of each survivor into weights_; returns their sum.
double Sampler::softmax_weights() {
  float max_logit = candidates_.front().logit;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  const float inv_t = 1.0f / params_.temperature;
  weights_.resize(candidates_.size());
  double total = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    weights_[i] = std::exp((candidates_[i].logit - max_logit) * inv_t);
    total += weights_[i];
  }
  return total;
}

// Softmax of logit / temperature over the survivors, then one draw.
TokenId Sampler::draw() {
  const double total = softmax_weights();
  const double u = uniform01(rng_) * total;
  double cumulative = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += weights_[i];
    if (u < cumulative) return candidates_[i].id;
  }
  return candidates_.back().id;  // u rounded up to total
}

double token_logprob(std::span<const float> logits, TokenId id) {
  float max = logits[0];
  for (float v : logits) max = std::max(max, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  return static_cast<double>(logits[static_cast<size_t>(id)]) - max - std::log(sum);
}

std::vector<std::pair<TokenId, float>> top_logprobs(std::span<const float> logits, int k) {
  if (k <= 0 || logits.empty()) return {};
  double max_logit = logits[0];
  for (float l : logits) max_logit = std::max(max_logit, static_cast<double>(l));
  double total = 0.0;
  for (float l : logits) total += std::exp(static_cast<double>(l) - max_logit);
  const double log_z = max_logit + std::log(total);

  const size_t n = std::min(static_cast<size_t>(k), logits.size());
  std::vector<TokenId> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](TokenId a, TokenId b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<std::pair<TokenId, float>> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    out.emplace_back(ids[i], static_cast<float>(logits[ids[i]] - log_z));
  }
  return out;
}

StopDetector::StopDetector(std::vector<std::string> stop_strings) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopDetector::feed(std::string_view piece) {
  if (stopped_) return {};
  held_ += piece;

  // Every stop string that ends in held_ also starts in it: whatever could begin one was held.
  size_t stop_begin = std::string::npos;
  size_t stop_end = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = held_.find(s);
    if (at == std::string::npos) continue;
    const size_t end = at + s.size();
    if (end < stop_end || (end == stop_end && at < stop_begin)) {
      stop_begin = at;
      stop_end = end;
    }
  }
  if (stop_begin != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, stop_begin);
    held_.clear();
    return out;
  }

  // Hold back the longest tail of held_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > hold; --len) {
      if (std::string_view(held_).substr(held_.size() - len) ==
          std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopDetector::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace omni::model
