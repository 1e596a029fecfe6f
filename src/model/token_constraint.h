// TokenConstraint: grammar-constrained sampling. Which tokens of a vocabulary a grammar (grammar.h)
// admits after the text generated so far, applied as a mask on the logits before sampling.
//
// A token is admitted when its bytes, appended to the output, keep it a prefix of some sentence of
// the grammar; end-of-generation tokens are admitted exactly when the output is a whole sentence;
// tokens without text of their own (control tokens) never are. So a sampled output is always a
// prefix of a sentence, and a whole one when generation ends on an end token or because nothing
// may follow (finished()).
//
// Cost: TokenVocabulary keeps every token's bytes in a trie, built once per tokenizer; a mask is
// computed by walking the trie against the grammar state (a subtree is left at the first byte the
// grammar refuses, so tokens sharing a refused prefix cost nothing) and cached by state in the
// ConstrainedGrammar, which requests with the same grammar share: inside a string or between
// values the state repeats, and the mask costs a lookup and a pass over the logits.
//
// Threads: TokenVocabulary and ConstrainedGrammar are immutable or locked and may be shared;
// a TokenConstraint is one generation's state and is not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/grammar.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

namespace omni::model {

class TokenVocabulary {
 public:
  explicit TokenVocabulary(const Tokenizer& tokenizer);

  size_t size() const { return n_vocab_; }
  const std::string& bytes(TokenId id) const { return bytes_[static_cast<size_t>(id)]; }
  bool is_end(TokenId id) const { return is_end_[static_cast<size_t>(id)]; }

  // The trie: node 0 is the root (no byte); children are contiguous.
  struct Node {
    uint8_t byte = 0;
    uint32_t first_child = 0, child_count = 0;
    uint32_t first_token = 0, token_count = 0;  // tokens whose bytes end here (into token_ids)
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<TokenId>& token_ids() const { return token_ids_; }
  const std::vector<TokenId>& end_tokens() const { return end_tokens_; }

 private:
  size_t n_vocab_ = 0;
  std::vector<std::string> bytes_;
  std::vector<bool> is_end_;
  std::vector<TokenId> end_tokens_;
  std::vector<Node> nodes_;
  std::vector<TokenId> token_ids_;
};

// A grammar over a vocabulary, with its cache of masks by state. Shared by the generations using it.
class ConstrainedGrammar {
 public:
  using Mask = std::vector<uint64_t>;  // bit i: token i admitted

  // `cache_bytes`: how much the cached masks may take (least recently used go first).
  ConstrainedGrammar(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary,
                     size_t cache_bytes = 64u << 20);

  const Grammar& grammar() const { return grammar_; }
  const TokenVocabulary& vocabulary() const { return *vocabulary_; }
  // The tokens admitted in `state` (end tokens included when it is complete).
  std::shared_ptr<const Mask> mask(const GrammarState& state) const;
  // The same when it is cached already (a hit), else null: nothing is computed (nor counted).
  std::shared_ptr<const Mask> cached(const GrammarState& state) const;

  struct Stats {
    size_t hits = 0, misses = 0;
  };
  Stats stats() const;

 private:
  std::shared_ptr<const Mask> cached_at(const std::string& key) const;  // cached() by the state's key
  std::shared_ptr<const Mask> compute(const GrammarState& state) const;
  // The walk's transitions, learnt lazily and kept (a DFA over the states met so far): the trie
  // walk of a state that admits most tokens meets few distinct states (inside a string, the state
  // after any plain character is the same), so most of its steps are one lookup in a dense table
  // (a row of 256 per state: a hash lookup per trie node made a 150k-token mask cost ~8 ms).
  // Guarded by walk_mutex_; dropped when over kMaxWalkStates rows.
  int32_t intern(const GrammarState& state) const;
  int32_t step(int32_t state, uint8_t byte) const;

  const Grammar grammar_;
  const std::shared_ptr<const TokenVocabulary> vocabulary_;
  const size_t max_entries_;
  mutable std::mutex mutex_;
  mutable std::list<std::string> lru_;  // most recent first
  struct Entry {
    std::shared_ptr<const Mask> mask;
    std::list<std::string>::iterator position;
  };
  mutable std::unordered_map<std::string, Entry> cache_;
  mutable Stats stats_;
  mutable std::mutex walk_mutex_;
  mutable std::unordered_map<std::string, int32_t> state_ids_;
  mutable std::vector<GrammarState> states_;
  mutable std::vector<std::array<int32_t, 256>> next_;  // [state][byte] -> state, -1 refused, -2 unknown
};

// One generation under a grammar.
class TokenConstraint {
 public:
  explicit TokenConstraint(std::shared_ptr<const ConstrainedGrammar> grammar);

  // Sets the logits of the tokens not admitted now to -infinity. False when none is admitted
  // (cannot happen for a grammar finish() accepted, unless limits dropped every stack).
  bool apply(std::span<float> logits);
  // Draws a token from `logits` under the grammar. When the state's mask is cached, from the masked
  // logits (in `scratch`: a pass over them and one draw). Otherwise first as if unconstrained; a
  // refused token is struck out (in `scratch`) and the draw repeated a few times; only then is the
  // mask computed and the masked logits drawn from. For plain softmax sampling and for greedy this is exactly a draw from the masked
  // distribution (striking out refused tokens leaves the admitted ones' odds unchanged: an
  // admitted t ends up drawn with probability p(t) / Z, Z the admitted mass), and the mask is
  // computed only where the model strays, which with a trained model is rare. With top-k, top-p or
  // min-p the filters see the struck-out logits: close to, not exactly, the masked distribution.
  // nullopt: nothing is admitted. Does not accept() the token.
  std::optional<TokenId> sample(Sampler& sampler, std::span<const float> logits, std::vector<float>& scratch);
  // Whether `token` is admitted now (one walk over its bytes; no mask).
  bool admits(TokenId token) const;
  // Appends `token`'s bytes; false (state unchanged) when they are not admitted.
  bool accept(TokenId token);
  // The output is a whole sentence.
  bool complete() const { return Grammar::complete(state_); }
  // The output is a whole sentence and nothing may follow: generation is over.
  bool finished() const { return complete() && !Grammar::can_continue(state_); }

 private:
  bool apply_mask(const ConstrainedGrammar::Mask& mask, std::span<float> logits) const;

  std::shared_ptr<const ConstrainedGrammar> grammar_;
  GrammarState state_;
};

}  // namespace omni::model
