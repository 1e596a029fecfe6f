// Internals shared by tokenizer.cpp, tokenizer_spm.cpp and tokenizer_bpe.cpp: the vocabulary
// table and the two encoders that turn one fragment of plain text (special tokens already split
// out) into token ids.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/result.h"
#include "gguf/value.h"
#include "model/pretokenizer.h"
#include "model/tokenizer.h"

namespace omni::model::detail {

// Token attributes: llama.cpp's reading of `tokenizer.ggml.token_type` plus its per-model fixes.
enum TokenAttr : uint16_t {
  kAttrNormal = 1 << 0,
  kAttrUnknown = 1 << 1,
  kAttrControl = 1 << 2,
  kAttrUserDefined = 1 << 3,
  kAttrUnused = 1 << 4,
  kAttrByte = 1 << 5,
  kAttrRStrip = 1 << 6,  // matched as a special token, it also takes the whitespace after it
};

// Lets string-keyed maps be searched with a string_view without building a string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
template <class Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

struct Vocab {
  std::vector<std::string> text;  // as stored in the GGUF ("▁the", "Ġthe", "<0x0A>", "<s>")
  std::vector<float> score;
  std::vector<uint16_t> attr;  // TokenAttr bits
  StringMap<TokenId> id_of_text;
  std::optional<TokenId> unk;

  size_t size() const { return text.size(); }
  bool contains(TokenId id) const { return id >= 0 && static_cast<size_t>(id) < text.size(); }
  std::optional<TokenId> find(std::string_view token_text) const {
    auto it = id_of_text.find(token_text);
    if (it == id_of_text.end()) return std::nullopt;
    return it->second;
  }
};

// SentencePiece BPE as llama.cpp runs it: start from UTF-8 characters, repeatedly join the adjacent
// pair that forms the highest-scoring token, then spell whatever is not a token with byte tokens.
class SpmEncoder {
 public:
  explicit SpmEncoder(const Vocab& vocab);
  // Appends the tokens of `text`, whose spaces the caller has already escaped to "▁".
  void encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) const;

 private:
  std::array<std::optional<TokenId>, 256> byte_tokens_;  // "<0xXX>", else the byte itself
};

// Byte-level BPE: pre-tokenize, map each word's bytes to GPT-2's alphabet, then repeatedly join the
// adjacent pair with the lowest merge rank.
class BpeEncoder {
 public:
  // `merges` is `tokenizer.ggml.merges`: strings "left right", lowest rank first.
  static Result<BpeEncoder> create(const gguf::Array& merges, const PreTokenizerSpec& spec);
  void encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) const;

 private:
  BpeEncoder(PreTokenizer pre, bool ignore_merges) : pre_(std::move(pre)), ignore_merges_(ignore_merges) {}
  void encode_word(const Vocab& vocab, std::string_view word, std::vector<TokenId>& out) const;

  struct Merge {
    uint32_t rank;
    uint32_t result;  // symbol id of left + right
  };
  static uint64_t pair_key(uint32_t left, uint32_t right) { return (uint64_t{left} << 32) | right; }

  PreTokenizer pre_;
  bool ignore_merges_;
  // Every string that takes part in a merge gets a small id, so pairs are looked up by two ints.
  StringMap<uint32_t> symbol_ids_;
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace omni::model::detail
