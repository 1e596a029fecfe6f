#include "model/token_constraint.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <numeric>

namespace omni::model {
namespace {
// Draws refused before the mask is computed: most states admit either almost every token (inside a
// string, where a refused draw is a rare quote or control token and the next one passes) or few
// (between values, where the mask is quick to compute and repeats, so it is cached).
constexpr int kRetries = 1;
// Learnt transitions kept per grammar (about 64 bytes each with their states).
// The walk's transition table holds a row of 256 entries (1 KiB) per grammar state met: at most
// this many rows (16 MiB) before it starts afresh.
constexpr size_t kMaxWalkStates = 1u << 14;
constexpr int32_t kUnknown = -2;  // a transition not learnt yet (-1: the byte is refused)
}  // namespace

TokenVocabulary::TokenVocabulary(const Tokenizer& tokenizer) : n_vocab_(tokenizer.n_vocab()) {
  bytes_.resize(n_vocab_);
  is_end_.assign(n_vocab_, false);
  std::vector<TokenId> order;
  for (size_t i = 0; i < n_vocab_; ++i) {
    const TokenId id = static_cast<TokenId>(i);
    if (tokenizer.is_end_of_generation(id)) {
      is_end_[i] = true;
      end_tokens_.push_back(id);
      continue;
    }
    if (tokenizer.is_control(id)) continue;
    bytes_[i] = tokenizer.token_to_piece(id);
    if (!bytes_[i].empty()) order.push_back(id);
  }
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) { return bytes_[a] < bytes_[b]; });

  // Breadth first, so each node's children are appended together.
  struct Pending {
    uint32_t node;
    size_t lo, hi, depth;
  };
  nodes_.push_back({});
  std::deque<Pending> queue{{0, 0, order.size(), 0}};
  while (!queue.empty()) {
    const Pending p = queue.front();
    queue.pop_front();
    size_t lo = p.lo;
    nodes_[p.node].first_token = static_cast<uint32_t>(token_ids_.size());
    while (lo < p.hi && bytes_[order[lo]].size() == p.depth) token_ids_.push_back(order[lo++]);
    nodes_[p.node].token_count = static_cast<uint32_t>(token_ids_.size()) - nodes_[p.node].first_token;
    nodes_[p.node].first_child = static_cast<uint32_t>(nodes_.size());
    while (lo < p.hi) {
      const uint8_t byte = static_cast<uint8_t>(bytes_[order[lo]][p.depth]);
      size_t end = lo;
      while (end < p.hi && static_cast<uint8_t>(bytes_[order[end]][p.depth]) == byte) ++end;
      Node child;
      child.byte = byte;
      queue.push_back({static_cast<uint32_t>(nodes_.size()), lo, end, p.depth + 1});
      nodes_.push_back(child);
      ++nodes_[p.node].child_count;
      lo = end;
    }
  }
}

ConstrainedGrammar::ConstrainedGrammar(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary,
                                       size_t cache_bytes)
    : grammar_(std::move(grammar)),
      vocabulary_(std::move(vocabulary)),
      max_entries_(std::max<size_t>(1, cache_bytes / ((vocabulary_->size() + 63) / 64 * 8 + 64))) {}

ConstrainedGrammar::Stats ConstrainedGrammar::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::shared_ptr<const ConstrainedGrammar::Mask> ConstrainedGrammar::cached(const GrammarState& state) const {
  return cached_at(state.key());
}

std::shared_ptr<const ConstrainedGrammar::Mask> ConstrainedGrammar::cached_at(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.position);
  ++stats_.hits;
  return it->second.mask;
}

std::shared_ptr<const ConstrainedGrammar::Mask> ConstrainedGrammar::mask(const GrammarState& state) const {
  std::string key = state.key();
  if (auto hit = cached_at(key)) return hit;
  {
    std::lock_guard lock(mutex_);
    ++stats_.misses;
  }
  auto computed = compute(state);
  std::lock_guard lock(mutex_);
  if (cache_.count(key)) return computed;  // another generation computed it meanwhile
  while (cache_.size() >= max_entries_) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  cache_.emplace(std::move(key), Entry{computed, lru_.begin()});
  return computed;
}

std::shared_ptr<const ConstrainedGrammar::Mask> ConstrainedGrammar::compute(const GrammarState& state) const {
  const TokenVocabulary& v = *vocabulary_;
  auto mask = std::make_shared<Mask>((v.size() + 63) / 64, 0);
  auto set = [&](TokenId id) { (*mask)[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63); };
  if (Grammar::complete(state))
    for (TokenId id : v.end_tokens()) set(id);
  if (!Grammar::can_continue(state)) return mask;

  // Depth-first over the trie, each frame with the grammar state after its node's bytes.
  std::lock_guard lock(walk_mutex_);
  if (states_.size() > kMaxWalkStates) {
    next_.clear();
    state_ids_.clear();
    states_.clear();
  }
  struct Frame {
    uint32_t node;
    uint32_t next_child;
    int32_t state;
  };
  std::vector<Frame> path{{0, 0, intern(state)}};
  const auto& nodes = v.nodes();
  while (!path.empty()) {
    Frame& f = path.back();
    const TokenVocabulary::Node& n = nodes[f.node];
    if (f.next_child == n.child_count) {
      path.pop_back();
      continue;
    }
    const uint32_t c = n.first_child + f.next_child++;
    const int32_t next = step(f.state, nodes[c].byte);
    if (next < 0) continue;  // the whole subtree is refused
    const TokenVocabulary::Node& child = nodes[c];
    for (uint32_t t = 0; t < child.token_count; ++t) set(v.token_ids()[child.first_token + t]);
    if (child.child_count) path.push_back({c, 0, next});
  }
  return mask;
}

int32_t ConstrainedGrammar::intern(const GrammarState& state) const {
  auto [it, added] = state_ids_.emplace(state.key(), static_cast<int32_t>(states_.size()));
  if (added) {
    states_.push_back(state);
    next_.emplace_back();
    next_.back().fill(kUnknown);
  }
  return it->second;
}

int32_t ConstrainedGrammar::step(int32_t state, uint8_t byte) const {
  if (const int32_t known = next_[static_cast<size_t>(state)][byte]; known != kUnknown) return known;
  GrammarState next;
  grammar_.advance(states_[static_cast<size_t>(state)], byte, next);
  const int32_t id = next.stacks.empty() ? -1 : intern(next);  // may grow next_: index again below
  next_[static_cast<size_t>(state)][byte] = id;
  return id;
}

TokenConstraint::TokenConstraint(std::shared_ptr<const ConstrainedGrammar> grammar)
    : grammar_(std::move(grammar)), state_(grammar_->grammar().initial()) {}

bool TokenConstraint::apply(std::span<float> logits) { return apply_mask(*grammar_->mask(state_), logits); }

bool TokenConstraint::apply_mask(const ConstrainedGrammar::Mask& mask, std::span<float> logits) const {
  bool any = false;
  const size_t n = std::min(logits.size(), grammar_->vocabulary().size());
  for (size_t w = 0; w * 64 < n; ++w) {
    const uint64_t bits = mask[w];
    if (bits == ~uint64_t{0}) {
      any = true;
      continue;
    }
    if (bits) any = true;
    const size_t end = std::min(n, w * 64 + 64);
    for (size_t i = w * 64; i < end; ++i)
      if (!((bits >> (i - w * 64)) & 1)) logits[i] = -std::numeric_limits<float>::infinity();
  }
  for (size_t i = n; i < logits.size(); ++i) logits[i] = -std::numeric_limits<float>::infinity();
  return any;
}

std::optional<TokenId> TokenConstraint::sample(Sampler& sampler, std::span<const float> logits,
                                               std::vector<float>& scratch) {
  auto masked = [&](const ConstrainedGrammar::Mask& mask) -> std::optional<TokenId> {
    scratch.assign(logits.begin(), logits.end());
    if (!apply_mask(mask, scratch)) return std::nullopt;
    return sampler.sample(scratch);
  };
  if (auto mask = grammar_->cached(state_)) return masked(*mask);
  TokenId t = sampler.sample(logits);
  if (admits(t)) return t;
  scratch.assign(logits.begin(), logits.end());
  for (int retry = 0; retry < kRetries && scratch.size() > static_cast<size_t>(kRetries) + 1; ++retry) {
    scratch[static_cast<size_t>(t)] = -std::numeric_limits<float>::infinity();
    t = sampler.sample(scratch);
    if (admits(t)) return t;
  }
  if (!apply(scratch)) return std::nullopt;
  return sampler.sample(scratch);
}

bool TokenConstraint::admits(TokenId token) const {
  const TokenVocabulary& v = grammar_->vocabulary();
  if (token < 0 || static_cast<size_t>(token) >= v.size()) return false;
  if (v.is_end(token)) return complete();
  const std::string& bytes = v.bytes(token);
  if (bytes.empty()) return false;
  GrammarState s = state_;
  return grammar_->grammar().advance(s, bytes);
}

bool TokenConstraint::accept(TokenId token) {
  const TokenVocabulary& v = grammar_->vocabulary();
  if (token < 0 || static_cast<size_t>(token) >= v.size()) return false;
  if (v.is_end(token)) return complete();
  const std::string& bytes = v.bytes(token);
  if (bytes.empty()) return false;
  GrammarState s = state_;
  if (!grammar_->grammar().advance(s, bytes)) return false;
  state_ = std::move(s);
  return true;
}

}  // namespace omni::model
