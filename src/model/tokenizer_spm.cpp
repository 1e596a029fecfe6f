#include <algorithm>
#include <queue>

#include "model/tokenizer_internal.h"
#include "model/unicode.h"

namespace omni::model::detail {
namespace {

struct Symbol {
  size_t begin;
  size_t length;  // 0 once merged into its left neighbour
  int prev;
  int next;
};

struct Bigram {
  float score;
  int left;
  int right;
  size_t length;  // left.length + right.length when queued; a mismatch later means it is stale
};

// Highest score first; among equal scores the leftmost pair, as llama.cpp orders them.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

SpmEncoder::SpmEncoder(const Vocab& vocab) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int byte = 0; byte < 256; ++byte) {
    const char name[] = {'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
    byte_tokens_[byte] = vocab.find(std::string_view(name, sizeof name));
    if (!byte_tokens_[byte]) byte_tokens_[byte] = vocab.find(std::string(1, static_cast<char>(byte)));
  }
}

void SpmEncoder::encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) const {
  if (text.empty()) return;
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text.size();) {
    size_t length = std::min(utf8_sequence_length(static_cast<uint8_t>(text[offset])), text.size() - offset);
    int index = static_cast<int>(symbols.size());
    symbols.push_back({offset, length, index - 1, offset + length == text.size() ? -1 : index + 1});
    offset += length;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    size_t length = symbols[left].length + symbols[right].length;
    std::optional<TokenId> id = vocab.find(text.substr(symbols[left].begin, length));
    if (id) queue.push({vocab.score[*id], left, right, length});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.length == 0 || right.length == 0 || left.length + right.length != bigram.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int i = 0; i != -1; i = symbols[i].next) {
    std::string_view piece = text.substr(symbols[i].begin, symbols[i].length);
    if (std::optional<TokenId> id = vocab.find(piece)) {
      out.push_back(*id);
      continue;
    }
    // Not a piece of the vocabulary: spell it byte by byte (llama.cpp would abort where a byte has
    // no token; the unknown token stands in for it instead).
    for (char c : piece) {
      std::optional<TokenId> byte_token = byte_tokens_[static_cast<uint8_t>(c)];
      if (!byte_token) byte_token = vocab.unk;
      if (byte_token) out.push_back(*byte_token);
    }
  }
}

}  // namespace omni::model::detail
