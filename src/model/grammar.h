// Grammar: a context-free grammar over bytes, and the matcher state that says which bytes may come
// next. It is what constrained generation runs on: a JSON Schema (json_schema_grammar.h) or a tool
// call's shape is compiled to one, and TokenConstraint (token_constraint.h) turns its states into
// token masks.
//
// A grammar is a set of rules; a rule is a list of alternatives; an alternative is a sequence of
// symbols, each a set of bytes (one byte of input) or a reference to a rule. Working on bytes, not
// characters, lets any token (which may hold part of a UTF-8 character) be checked directly; rules
// that want whole characters spell out UTF-8's byte sequences.
//
// The matcher state is the set of parse stacks still alive after the input so far (each stack the
// positions still to be matched, innermost last), as in a pushdown automaton run on all
// alternatives at once. A stack that has matched everything is empty: the input is then a whole
// sentence of the grammar (complete()). A rule referenced last in an alternative replaces its
// caller's frame (a tail call), so repetition written as right recursion (R := x R | "") keeps the
// stacks short.
//
// Limits: GrammarBuilder::finish refuses left recursion (a rule that can reach itself without
// consuming a byte: the matcher would loop) and grammars over max_symbols. At run time a stack
// deeper than max_depth is dropped (nesting beyond it is not admitted) and a state keeps at most
// max_stacks stacks (an ambiguous grammar cannot grow it without bound); both only narrow what is
// admitted, never widen it, and every stack kept can still complete, since every rule of a grammar
// that finish() accepted derives some finite string.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace omni::model {

// A set of byte values.
struct ByteSet {
  std::array<uint64_t, 4> bits{};
  static ByteSet of(uint8_t b) { ByteSet s; s.add(b); return s; }
  static ByteSet range(uint8_t lo, uint8_t hi) { ByteSet s; s.add_range(lo, hi); return s; }
  void add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void add_range(uint8_t lo, uint8_t hi) { for (unsigned b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b)); }
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  bool operator==(const ByteSet&) const = default;
};

struct GrammarLimits {
  size_t max_symbols = 200000;  // symbols of all alternatives together (finish() refuses more)
  size_t max_depth = 256;       // frames on one parse stack
  size_t max_stacks = 256;      // parse stacks in one state
};

// The parse stacks alive after some input. Sorted and without duplicates, so equal states compare
// (and hash, through key()) equal.
struct GrammarState {
  std::vector<std::vector<uint32_t>> stacks;
  bool operator==(const GrammarState&) const = default;
  // The state as bytes, for use as a cache key.
  std::string key() const;
};

class Grammar {
 public:
  struct Symbol {
    enum Kind : uint8_t { kEnd, kBytes, kRule };
    Kind kind = kEnd;
    uint32_t value = 0;  // kBytes: index into byte_sets; kRule: the rule
  };

  // Before any input.
  const GrammarState& initial() const { return initial_; }
  // The state after `byte`; no stacks when the byte is not admitted. `out` is reused.
  void advance(const GrammarState& state, uint8_t byte, GrammarState& out) const;
  // advance() over every byte of `text`; false (and `state` unspecified) once one is refused.
  bool advance(GrammarState& state, std::string_view text) const;
  // Whether the input so far is a whole sentence (generation may end here).
  static bool complete(const GrammarState& state);
  // Whether some byte may follow.
  static bool can_continue(const GrammarState& state);
  // Whether `text` is a whole sentence.
  bool matches(std::string_view text) const;

  size_t symbol_count() const { return symbols_.size(); }
  const GrammarLimits& limits() const { return limits_; }

 private:
  friend class GrammarBuilder;
  Grammar() = default;
  // Pushes `stack` (top at its back) into `out` once its top is a byte set, expanding rule
  // references and popping finished alternatives; an empty stack means complete.
  void settle(std::vector<uint32_t>& stack, GrammarState& out, int budget) const;
  static void normalize(GrammarState& state, size_t max_stacks);

  std::vector<Symbol> symbols_;                 // every alternative, each ended by kEnd
  std::vector<std::vector<uint32_t>> rules_;    // each rule's alternatives' first positions
  std::vector<ByteSet> byte_sets_;
  GrammarState initial_;
  GrammarLimits limits_;
};

// Builds a Grammar rule by rule. Rules may be referenced before their alternatives are given, so
// recursive grammars are written directly.
class GrammarBuilder {
 public:
  using RuleId = uint32_t;
  struct Sym {
    bool is_rule = false;
    uint32_t value = 0;  // a rule, or a byte-set index
  };
  using Sequence = std::vector<Sym>;

  explicit GrammarBuilder(GrammarLimits limits = {}) : limits_(limits) {}

  RuleId new_rule();
  void add_alternative(RuleId rule, Sequence sequence);
  Sym bytes(const ByteSet& set);
  static Sym ref(RuleId rule) { return {true, rule}; }
  // The bytes of `text`, one symbol each.
  Sequence literal(std::string_view text);
  // A rule matching `item` between min and max times (max < 0: unbounded), without ambiguity.
  RuleId repeat(Sym item, size_t min, long max);
  // Symbols added so far (for early refusal of a grammar growing past the limit).
  size_t size() const { return symbol_count_; }
  const GrammarLimits& limits() const { return limits_; }

  // The grammar whose sentences are `root`'s. Errors (InvalidArgument): a rule without
  // alternatives, left recursion, more than max_symbols symbols (ResourceExhausted).
  Result<Grammar> finish(RuleId root) const;

 private:
  GrammarLimits limits_;
  std::vector<std::vector<Sequence>> rules_;
  std::vector<ByteSet> byte_sets_;
  size_t symbol_count_ = 0;
};

}  // namespace omni::model
