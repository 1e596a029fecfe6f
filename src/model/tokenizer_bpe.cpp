#include <algorithm>
#include <limits>
#include <queue>

#include "model/tokenizer_internal.h"
#include "model/unicode.h"

namespace omni::model::detail {
namespace {

constexpr uint32_t kNoSymbol = std::numeric_limits<uint32_t>::max();

struct Symbol {
  size_t begin;
  size_t length;  // 0 once merged into its left neighbour
  uint32_t id;    // symbol id of the text, kNoSymbol if no merge mentions it
  int prev;
  int next;
};

struct Candidate {
  uint32_t rank;
  int left;
  int right;
  uint32_t left_id;  // the symbols' ids when queued; a change later means it is stale
  uint32_t right_id;
  uint32_t result;
};

// Lowest rank first; among equal ranks the leftmost pair, as llama.cpp orders them.
struct CandidateOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

Result<BpeEncoder> BpeEncoder::create(const gguf::Array& merges, const PreTokenizerSpec& spec) {
  if (merges.elem_type != gguf::ValueType::STRING)
    return Error{ErrorCode::Corruption, "tokenizer.ggml.merges is not an array of strings"};
  Result<PreTokenizer> pre = PreTokenizer::create(spec.patterns);
  if (!pre) return pre.error();
  BpeEncoder encoder(std::move(*pre), spec.ignore_merges);

  auto intern = [&](std::string_view text) {
    auto [it, inserted] = encoder.symbol_ids_.try_emplace(std::string(text), 0);
    if (inserted) it->second = static_cast<uint32_t>(encoder.symbol_ids_.size() - 1);
    return it->second;
  };
  encoder.merges_.reserve(merges.strings.size());
  for (size_t rank = 0; rank < merges.strings.size(); ++rank) {
    std::string_view merge = merges.strings[rank];
    // Split at the first space after the first character, as llama.cpp does; a line without one
    // merges nothing.
    size_t space = merge.find(' ', 1);
    if (space == std::string_view::npos) continue;
    std::string_view left = merge.substr(0, space);
    std::string_view right = merge.substr(space + 1);
    std::string joined = std::string(left) + std::string(right);
    uint32_t left_id = intern(left);
    uint32_t right_id = intern(right);
    uint32_t result = intern(joined);
    // The first (lowest-ranked) occurrence of a pair wins.
    encoder.merges_.try_emplace(pair_key(left_id, right_id), Merge{static_cast<uint32_t>(rank), result});
  }
  return encoder;
}

void BpeEncoder::encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) const {
  std::string mapped;
  for (const std::string& word : pre_.split(text)) {
    mapped.clear();
    for (char c : word) mapped += gpt2_char_of_byte(static_cast<uint8_t>(c));
    encode_word(vocab, mapped, out);
  }
}

void BpeEncoder::encode_word(const Vocab& vocab, std::string_view word, std::vector<TokenId>& out) const {
  if (ignore_merges_) {
    if (std::optional<TokenId> id = vocab.find(word)) {
      out.push_back(*id);
      return;
    }
  }
  auto symbol_id = [&](std::string_view text) {
    auto it = symbol_ids_.find(text);
    return it == symbol_ids_.end() ? kNoSymbol : it->second;
  };

  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < word.size();) {
    size_t length = std::min(utf8_sequence_length(static_cast<uint8_t>(word[offset])), word.size() - offset);
    int index = static_cast<int>(symbols.size());
    symbols.push_back({offset, length, symbol_id(word.substr(offset, length)), index - 1,
                       offset + length == word.size() ? -1 : index + 1});
    offset += length;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    uint32_t left_id = symbols[left].id;
    uint32_t right_id = symbols[right].id;
    if (left_id == kNoSymbol || right_id == kNoSymbol) return;
    auto it = merges_.find(pair_key(left_id, right_id));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, left_id, right_id, it->second.result});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    Candidate candidate = queue.top();
    queue.pop();
    Symbol& left = symbols[candidate.left];
    Symbol& right = symbols[candidate.right];
    if (left.length == 0 || right.length == 0 || left.id != candidate.left_id ||
        right.id != candidate.right_id)
      continue;
    left.length += right.length;
    left.id = candidate.result;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = candidate.left;
    try_add(left.prev, candidate.left);
    try_add(candidate.left, left.next);
  }

  for (int i = 0; i != -1 && !symbols.empty(); i = symbols[i].next) {
    std::string_view piece = word.substr(symbols[i].begin, symbols[i].length);
    if (std::optional<TokenId> id = vocab.find(piece)) {
      out.push_back(*id);
      continue;
    }
    // A merge result missing from the vocabulary: fall back to one token per alphabet character
    // (each stands for one byte), or the unknown token, or nothing, as llama.cpp drops it too.
    for (size_t offset = 0; offset < piece.size();) {
      size_t length = std::min(utf8_sequence_length(static_cast<uint8_t>(piece[offset])), piece.size() - offset);
      std::optional<TokenId> id = vocab.find(piece.substr(offset, length));
      if (!id) id = vocab.unk;
      if (id) out.push_back(*id);
      offset += length;
    }
  }
}

}  // namespace omni::model::detail
