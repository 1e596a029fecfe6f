#include "net/speculative_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "model/speculative_sampling.h"

namespace omni::net {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kRetryRounds = 16;  // plain steps before a drafter that did not pay is tried again
constexpr double kEma = 0.2;           // weight of a new measurement

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
void blend(double& estimate, double sample) { estimate = estimate == 0 ? sample : (1 - kEma) * estimate + kEma * sample; }
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

Result<std::unique_ptr<SpeculativeDecoder>> SpeculativeDecoder::create(Pipeline& target,
                                                                       const model::Model& target_model,
                                                                       model::Sampler& sampler,
                                                                       const DraftOptions& options, uint32_t n_ctx,
                                                                       kernels::ThreadPool& pool) {
  const uint32_t n_vocab = target_model.config().n_vocab;
  std::unique_ptr<SpeculativeDecoder> d(new SpeculativeDecoder(target, sampler, options, n_ctx, n_vocab, pool));
  if (options.draft) {
    const model::Model& draft = *options.draft;
    if (draft.config().n_vocab != n_vocab)
      return Error{ErrorCode::InvalidArgument, "the draft model has " + std::to_string(draft.config().n_vocab) +
                                                   " tokens, the target " + std::to_string(n_vocab) +
                                                   ": a draft must share the target's vocabulary"};
    auto session = model::Session::create(draft, 0, draft.config().n_layer, n_ctx);
    if (!session) return session.error().with_context("the draft model");
    d->draft_session_ = std::move(*session);
  }
  return d;
}

SpeculativeDecoder::SpeculativeDecoder(Pipeline& target, model::Sampler& sampler, const DraftOptions& options,
                                       uint32_t n_ctx, uint32_t n_vocab, kernels::ThreadPool& pool)
    : target_(target),
      sampler_(sampler),
      options_(options),
      n_ctx_(n_ctx),
      n_vocab_(n_vocab),
      pool_(pool),
      draft_rng_(sampler.params().seed ^ 0x9e3779b97f4a7c15ull),
      // A quantized copy of the target agrees most of the time; a lookup is a guess.
      alpha_(options.draft ? 0.7 : 0.5) {}

Result<void> SpeculativeDecoder::prefill(std::span<const int32_t> prompt) {
  if (prompt.empty()) return Error{ErrorCode::InvalidArgument, "the prompt is empty"};
  const size_t batch = target_.max_batch();
  for (size_t i = 0; i < prompt.size(); i += batch) {
    std::span<const int32_t> piece = prompt.subspan(i, std::min(batch, prompt.size() - i));
    if (auto r = target_.forward(piece, logits_); !r) return r;
  }
  seq_.assign(prompt.begin(), prompt.end());
  sent_ = static_cast<uint32_t>(seq_.size());
  for (int32_t t : prompt) sampler_.accept(t);
  has_pending_row_ = true;
  return {};
}

Result<void> SpeculativeDecoder::resume(std::span<const int32_t> context) {
  if (context.empty()) return Error{ErrorCode::InvalidArgument, "the context is empty"};
  if (context.size() > n_ctx_)
    return Error{ErrorCode::ResourceExhausted, "a context of " + std::to_string(context.size()) +
                                                   " tokens is more than the session's " + std::to_string(n_ctx_)};
  seq_.assign(context.begin(), context.end());
  sent_ = static_cast<uint32_t>(seq_.size() - 1);
  has_pending_row_ = false;
  return {};
}

uint32_t SpeculativeDecoder::choose_k(uint32_t budget) const {
  if (!options_.draft && !options_.lookup) return 0;
  uint32_t k_max = std::min<uint32_t>(options_.max_draft, budget - 1);
  k_max = std::min<uint32_t>(k_max, static_cast<uint32_t>(target_.max_batch() - 1));
  k_max = std::min<uint32_t>(k_max, n_ctx_ - static_cast<uint32_t>(seq_.size()));
  if (!options_.adapt) return k_max;
  if (k_max == 0 || call_s_ == 0) return 0;  // the first round measures a plain step
  if (row_s_ == 0) return std::min<uint32_t>(k_max, 2);  // the next one what a further row costs
  // Expected tokens of a round with K drafts: 1 + a + ... + a^K; its time: a one-row call, K more
  // rows and K drafted tokens.
  uint32_t best = 0;
  double best_rate = 1.0 / call_s_;
  double expected = 1.0, power = 1.0;
  for (uint32_t k = 1; k <= k_max; ++k) {
    power *= alpha_;
    expected += power;
    const double rate = expected / (call_s_ + k * (row_s_ + draft_s_));
    if (rate > best_rate) {
      best = k;
      best_rate = rate;
    }
  }
  return best;
}

Result<void> SpeculativeDecoder::sync_draft() {
  size_t common = 0;
  while (common < draft_seq_.size() && common < seq_.size() && draft_seq_[common] == seq_[common]) ++common;
  if (common == seq_.size()) --common;  // refeed the last token for its logits
  if (auto r = draft_session_->rollback(static_cast<uint32_t>(draft_seq_.size() - common)); !r) return r;
  draft_seq_.resize(common);
  const size_t batch = 512;
  for (size_t i = common; i < seq_.size(); i += batch) {
    std::span<const int32_t> piece(seq_.data() + i, std::min(batch, seq_.size() - i));
    if (auto r = draft_session_->forward(piece, {}, model::Output::LastLogits, draft_logits_, pool_); !r)
      return r.error().with_context("the draft model");
    draft_seq_.insert(draft_seq_.end(), piece.begin(), piece.end());
  }
  return {};
}

void SpeculativeDecoder::lookup_drafts(uint32_t k, std::vector<int32_t>& drafts) const {
  const size_t n_seq = seq_.size();
  for (size_t n = std::min<size_t>(options_.lookup_ngram, n_seq - 1); n >= 1; --n) {
    const int32_t* suffix = seq_.data() + n_seq - n;
    // The latest earlier occurrence: recent text predicts best.
    for (size_t j = n_seq - n; j-- > 0;) {
      if (!std::equal(suffix, suffix + n, seq_.data() + j)) continue;
      for (size_t t = j + n; t < n_seq && drafts.size() < k; ++t) drafts.push_back(seq_[t]);
      return;
    }
  }
}

Result<void> SpeculativeDecoder::draft_tokens(uint32_t k, std::vector<int32_t>& drafts,
                                              std::vector<std::vector<model::TokenProb>>& q) {
  if (!draft_session_) {
    lookup_drafts(k, drafts);
    for (int32_t x : drafts) q.push_back({{x, 1.0}});
    return {};
  }
  const auto t0 = Clock::now();
  if (auto r = sync_draft(); !r) return r;
  model::Sampler shadow = sampler_;  // the target's penalties over the drafted continuation
  const bool greedy = sampler_.params().temperature <= 0.0f;
  for (uint32_t i = 0; i < k; ++i) {
    int32_t x;
    if (greedy) {
      x = shadow.sample(draft_logits_);
      q.push_back({{x, 1.0}});
    } else {
      q.push_back(shadow.distribution(draft_logits_));
      x = model::draw_from(q.back(), uniform01(draft_rng_));
    }
    shadow.accept(x);
    drafts.push_back(x);
    if (i + 1 == k) break;
    const int32_t one[1] = {x};
    if (auto r = draft_session_->forward(one, {}, model::Output::LastLogits, draft_logits_, pool_); !r)
      return r.error().with_context("the draft model");
    draft_seq_.push_back(x);
  }
  blend(draft_s_, seconds_since(t0) / k);
  return {};
}

Result<std::vector<SpeculativeDecoder::Produced>> SpeculativeDecoder::next(uint32_t budget) {
  std::vector<Produced> out;
  if (budget == 0) return out;
  auto produce = [&](int32_t id, size_t row_index) {
    sampler_.accept(id);
    seq_.push_back(id);
    out.push_back({id, std::span<const float>(row(row_index), n_vocab_)});
  };
  if (has_pending_row_) {
    has_pending_row_ = false;
    produce(sampler_.sample(std::span<const float>(row(0), n_vocab_)), 0);
    return out;
  }
  if (seq_.empty()) return Error{ErrorCode::InvalidArgument, "next() before prefill()"};
  if (seq_.size() >= n_ctx_)
    return Error{ErrorCode::ResourceExhausted, "context is full: " + std::to_string(seq_.size()) + " positions"};

  uint32_t k = choose_k(budget);
  if (k == 0 && (options_.draft || options_.lookup) && ++rounds_since_try_ >= kRetryRounds) {
    rounds_since_try_ = 0;
    k = std::min<uint32_t>(2, std::min<uint32_t>(options_.max_draft, budget - 1));
    k = std::min<uint32_t>(k, n_ctx_ - static_cast<uint32_t>(seq_.size()));
    k = std::min<uint32_t>(k, static_cast<uint32_t>(target_.max_batch() - 1));
  }
  std::vector<int32_t> call{seq_.back()};
  std::vector<std::vector<model::TokenProb>> q;
  if (k > 0)
    if (auto r = draft_tokens(k, call, q); !r) return r.error();
  const size_t drafted = call.size() - 1;
  const auto t0 = Clock::now();
  auto sent = drafted == 0 ? target_.forward(call, logits_) : target_.forward_all(call, logits_);
  if (!sent) return sent.error();
  const double wall = seconds_since(t0);
  sent_ += static_cast<uint32_t>(call.size());
  if (drafted == 0)
    blend(call_s_, wall);
  else
    blend(row_s_, std::max(1e-6, (wall - call_s_) / drafted));

  const bool greedy = sampler_.params().temperature <= 0.0f;
  size_t kept = 0;
  for (; kept < drafted; ++kept) {
    const int32_t x = call[kept + 1];
    const std::span<const float> r(row(kept), n_vocab_);
    model::SpeculativeVerdict v;
    if (greedy) {
      const int32_t y = sampler_.sample(r);
      v = {y == x, y};
    } else {
      const auto p = sampler_.distribution(r);
      const double u_accept = sampler_.uniform();
      v = model::speculative_verdict(p, q[kept], x, u_accept, sampler_.uniform());
    }
    alpha_ = (1 - kEma) * alpha_ + kEma * (v.accepted ? 1.0 : 0.0);
    produce(v.token, kept);
    if (!v.accepted) break;
  }
  if (drafted > 0) {
    ++stats_.rounds;
    stats_.drafted += drafted;
    stats_.accepted += kept;
  }
  if (kept < drafted) {
    // The rejected drafts' positions (the replaced one and those after it).
    const uint32_t drop = static_cast<uint32_t>(drafted - kept);
    if (auto r = target_.rollback(drop); !r) return r.error();
    sent_ -= drop;
  } else {
    produce(sampler_.sample(std::span<const float>(row(drafted), n_vocab_)), drafted);
  }
  return out;
}

std::string SpeculativeDecoder::summary() const {
  char b[160];
  std::snprintf(b, sizeof b, "drafts (%s): K mean %.2f, acceptance %.0f%% over %llu rounds",
                options_.draft ? "draft model" : "prompt lookup", stats_.mean_k(), 100.0 * stats_.acceptance(),
                static_cast<unsigned long long>(stats_.rounds));
  return b;
}

}  // namespace omni::net
