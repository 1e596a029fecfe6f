#include "model/grammar.h"

#include <algorithm>
#include <cstring>

namespace omni::model {
namespace {
// Rule expansions one advance() may do: a grammar finish() accepted needs far fewer per byte; this
// only caps the cost of pathological (hugely ambiguous) ones.
constexpr int kExpansionBudget = 20000;
}  // namespace

std::string GrammarState::key() const {
  std::string k;
  for (const auto& s : stacks) {
    const uint32_t n = static_cast<uint32_t>(s.size());
    k.append(reinterpret_cast<const char*>(&n), sizeof n);
    k.append(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(uint32_t));
  }
  return k;
}

void Grammar::settle(std::vector<uint32_t>& stack, GrammarState& out, int budget) const {
  while (true) {
    if (stack.size() > limits_.max_depth) return;
    if (stack.empty()) {
      out.stacks.push_back(stack);
      return;
    }
    const uint32_t pos = stack.back();
    const Symbol& s = symbols_[pos];
    if (s.kind == Symbol::kEnd) {
      stack.pop_back();
      continue;
    }
    if (s.kind == Symbol::kBytes) {
      out.stacks.push_back(stack);
      return;
    }
    if (--budget < 0) return;
    stack.pop_back();
    if (symbols_[pos + 1].kind != Symbol::kEnd) stack.push_back(pos + 1);  // else a tail call
    const std::vector<uint32_t>& alts = rules_[s.value];
    for (size_t i = 0; i + 1 < alts.size(); ++i) {
      std::vector<uint32_t> copy = stack;
      copy.push_back(alts[i]);
      settle(copy, out, budget / static_cast<int>(alts.size()));
    }
    stack.push_back(alts.back());
  }
}

void Grammar::normalize(GrammarState& state, size_t max_stacks) {
  std::sort(state.stacks.begin(), state.stacks.end());
  state.stacks.erase(std::unique(state.stacks.begin(), state.stacks.end()), state.stacks.end());
  if (state.stacks.size() > max_stacks) state.stacks.resize(max_stacks);  // the empty (complete) one sorts first
}

void Grammar::advance(const GrammarState& state, uint8_t byte, GrammarState& out) const {
  out.stacks.clear();
  for (const auto& stack : state.stacks) {
    if (stack.empty()) continue;
    const uint32_t pos = stack.back();
    if (!byte_sets_[symbols_[pos].value].has(byte)) continue;
    std::vector<uint32_t> next = stack;
    next.back() = pos + 1;
    settle(next, out, kExpansionBudget);
  }
  normalize(out, limits_.max_stacks);
}

bool Grammar::advance(GrammarState& state, std::string_view text) const {
  GrammarState next;
  for (char c : text) {
    advance(state, static_cast<uint8_t>(c), next);
    std::swap(state, next);
    if (state.stacks.empty()) return false;
  }
  return true;
}

bool Grammar::complete(const GrammarState& state) {
  return !state.stacks.empty() && state.stacks.front().empty();
}

bool Grammar::can_continue(const GrammarState& state) {
  return !state.stacks.empty() && !state.stacks.back().empty();
}

bool Grammar::matches(std::string_view text) const {
  GrammarState s = initial_;
  return advance(s, text) && complete(s);
}

GrammarBuilder::RuleId GrammarBuilder::new_rule() {
  rules_.emplace_back();
  return static_cast<RuleId>(rules_.size() - 1);
}

void GrammarBuilder::add_alternative(RuleId rule, Sequence sequence) {
  symbol_count_ += sequence.size() + 1;
  rules_[rule].push_back(std::move(sequence));
}

GrammarBuilder::Sym GrammarBuilder::bytes(const ByteSet& set) {
  for (size_t i = 0; i < byte_sets_.size(); ++i)
    if (byte_sets_[i] == set) return {false, static_cast<uint32_t>(i)};
  byte_sets_.push_back(set);
  return {false, static_cast<uint32_t>(byte_sets_.size() - 1)};
}

GrammarBuilder::Sequence GrammarBuilder::literal(std::string_view text) {
  Sequence seq;
  seq.reserve(text.size());
  for (char c : text) seq.push_back(bytes(ByteSet::of(static_cast<uint8_t>(c))));
  return seq;
}

GrammarBuilder::RuleId GrammarBuilder::repeat(Sym item, size_t min, long max) {
  RuleId tail;
  if (max < 0) {
    tail = new_rule();  // tail := item tail | ""
    add_alternative(tail, {item, ref(tail)});
    add_alternative(tail, {});
  } else {
    tail = new_rule();  // up to (max - min) more: o_k := item o_{k-1} | ""
    add_alternative(tail, {});
    for (long k = static_cast<long>(min); k < max; ++k) {
      const RuleId more = new_rule();
      add_alternative(more, {item, ref(tail)});
      add_alternative(more, {});
      tail = more;
    }
  }
  if (min == 0) return tail;
  const RuleId r = new_rule();
  Sequence seq(min, item);
  seq.push_back(ref(tail));
  add_alternative(r, std::move(seq));
  return r;
}

Result<Grammar> GrammarBuilder::finish(RuleId root) const {
  if (symbol_count_ > limits_.max_symbols)
    return Error{ErrorCode::ResourceExhausted, "the grammar has " + std::to_string(symbol_count_) +
                                                   " symbols; the limit is " + std::to_string(limits_.max_symbols)};
  const size_t n = rules_.size();
  for (size_t r = 0; r < n; ++r)
    if (rules_[r].empty()) return Error{ErrorCode::InvalidArgument, "a grammar rule has no alternatives"};

  // Nullable rules (derive ""), then productive ones (derive some finite string), as fixpoints.
  auto fixpoint = [&](std::vector<bool>& flag, bool bytes_count) {
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (flag[r]) continue;
        for (const Sequence& alt : rules_[r]) {
          const bool all = std::all_of(alt.begin(), alt.end(),
                                       [&](const Sym& s) { return s.is_rule ? bool(flag[s.value]) : bytes_count; });
          if (all) {
            flag[r] = changed = true;
            break;
          }
        }
      }
    }
  };
  std::vector<bool> nullable(n, false), productive(n, false);
  fixpoint(nullable, false);
  fixpoint(productive, true);
  if (!productive[root]) return Error{ErrorCode::InvalidArgument, "the grammar derives no finite text"};
  for (size_t r = 0; r < n; ++r)
    if (!productive[r]) return Error{ErrorCode::InvalidArgument, "a grammar rule derives no finite text (endless recursion)"};

  // Left recursion: a cycle through references preceded only by nullable symbols.
  std::vector<std::vector<uint32_t>> leading(n);
  for (size_t r = 0; r < n; ++r)
    for (const Sequence& alt : rules_[r])
      for (const Sym& s : alt) {
        if (!s.is_rule) break;
        leading[r].push_back(s.value);
        if (!nullable[s.value]) break;
      }
  std::vector<uint8_t> color(n, 0);  // 0 unseen, 1 on the path, 2 done
  for (size_t start = 0; start < n; ++start) {
    if (color[start]) continue;
    std::vector<std::pair<uint32_t, size_t>> path{{static_cast<uint32_t>(start), 0}};
    color[start] = 1;
    while (!path.empty()) {
      auto& [r, next] = path.back();
      if (next == leading[r].size()) {
        color[r] = 2;
        path.pop_back();
        continue;
      }
      const uint32_t to = leading[r][next++];
      if (color[to] == 1)
        return Error{ErrorCode::InvalidArgument, "the grammar is left-recursive (a rule reaches itself without consuming input)"};
      if (color[to] == 0) {
        color[to] = 1;
        path.push_back({to, 0});
      }
    }
  }

  Grammar g;
  g.limits_ = limits_;
  g.byte_sets_ = byte_sets_;
  g.rules_.resize(n);
  g.symbols_.reserve(symbol_count_);
  for (size_t r = 0; r < n; ++r)
    for (const Sequence& alt : rules_[r]) {
      g.rules_[r].push_back(static_cast<uint32_t>(g.symbols_.size()));
      for (const Sym& s : alt)
        g.symbols_.push_back({s.is_rule ? Grammar::Symbol::kRule : Grammar::Symbol::kBytes, s.value});
      g.symbols_.push_back({Grammar::Symbol::kEnd, 0});
    }
  for (uint32_t start : g.rules_[root]) {
    std::vector<uint32_t> stack{start};
    g.settle(stack, g.initial_, kExpansionBudget);
  }
  Grammar::normalize(g.initial_, limits_.max_stacks);
  return g;
}

}  // namespace omni::model
