// Tokenizer: text <-> token ids for a model, built from its GGUF metadata (`tokenizer.ggml.*`).
//
// Two kinds, chosen by `tokenizer.ggml.model`: "llama" is SentencePiece BPE over piece scores with
// byte fallback; "gpt2" is byte-level BPE over ranked merges, cut first into words by the
// pre-tokenizer that `tokenizer.ggml.pre` names (GPT-2's when absent; see pretokenizer.h). Both give
// llama.cpp's ids: its defaults for absent keys, its special-token splitting, its space rules.
//
// A Tokenizer owns copies of everything it needs (the metadata may go away), is immutable once
// built and cheap to copy (copies share state); all methods may be called from many threads at
// once. Encoding never fails: any bytes are accepted (SentencePiece spells ill-formed UTF-8 with
// byte tokens; byte-level BPE sees each such byte as U+FFFD). from_metadata returns an Error
// naming the key or value at fault (unknown model or pre-tokenizer, missing or malformed arrays);
// decode returns an Error naming an id outside the vocabulary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "gguf/value.h"

namespace omni::model {

using TokenId = int32_t;

// A piece of text to encode with others (Tokenizer::encode over spans). special: special-token
// texts in it become their ids, as encode(text, .., parse_special=true) makes them. Otherwise it is
// plain text (from someone who must not be able to write control tokens): no control or unknown
// token text in it is matched, nor any token that steers the sequence (BOS, EOS, end of turn or of
// generation) or that the special spans of the same call use as markup; other user-defined tokens
// are vocabulary and matched, as Hugging Face matches its non-special added tokens.
struct TextSpan {
  std::string_view text;
  bool special = false;
};

class Tokenizer {
 public:
  enum class Kind { kSentencePiece, kBytePairEncoding };

  static Result<Tokenizer> from_metadata(const gguf::Metadata& metadata);

  // Token ids of `text`. add_special: add BOS and/or EOS as the metadata asks (add_bos() and
  // add_eos()). parse_special: control and unknown-type token texts in `text` become their ids;
  // user-defined tokens are always matched, as in llama.cpp.
  // stop_after: as for spans, below.
  std::vector<TokenId> encode(std::string_view text, bool add_special, bool parse_special,
                              size_t stop_after = SIZE_MAX) const;
  // The ids of the spans' concatenation, special-token texts matched as TextSpan says (a token
  // text split across spans is not matched). Plain text on both sides of a span boundary is one
  // stretch, as if it had never been split: where the plain spans hold no special-token text, the
  // ids equal encode(concatenation, add_special, parse_special=true). Encoding stops once more than
  // `stop_after` ids are out (checked after each stretch of plain text and each special token): a
  // result longer than stop_after is then only a prefix, which is all a caller with a budget needs.
  std::vector<TokenId> encode(std::span<const TextSpan> spans, bool add_special, size_t stop_after = SIZE_MAX) const;

  // The exact bytes `id` stands for ("▁" as a space, byte tokens as their byte, byte-level BPE
  // characters as their bytes), which need not be complete UTF-8. Control and unknown-type tokens
  // give "" unless render_special, then their text. Ids outside the vocabulary give "".
  std::string token_to_piece(TokenId id, bool render_special = false) const;

  // The concatenated pieces of `ids`, minus the one leading space of the first piece where the
  // vocabulary adds a space prefix when encoding (SentencePiece), as llama.cpp detokenizes, so
  // decode(encode(s, false, false)) == s for valid UTF-8 `s`. Error: an id outside the vocabulary.
  Result<std::string> decode(std::span<const TokenId> ids, bool render_special = false) const;

  Kind kind() const;
  size_t n_vocab() const;
  // The most bytes of text one token stands for (special tokens' texts included): a text of more
  // than n * max_token_bytes() bytes has more than n tokens, whatever it says, except where a
  // token that swallows the whitespace after it (rstrip) eats long runs of it.
  size_t max_token_bytes() const;
  std::optional<TokenId> bos() const;
  std::optional<TokenId> eos() const;
  // End of turn ("<|eot_id|>", "<|im_end|>", ...): by key, else by text as llama.cpp finds it.
  std::optional<TokenId> eot() const;
  bool add_bos() const;
  bool add_eos() const;
  // Whether generation should stop at `id`: EOS, EOT and the other end tokens llama.cpp knows.
  bool is_end_of_generation(TokenId id) const;
  bool is_control(TokenId id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Streams generated tokens to text: feed ids one at a time and get back only whole UTF-8
// characters, the bytes of a character split across tokens being held until it completes. Bytes
// that can never form a character come out as U+FFFD (one per maximal ill-formed sequence, as
// Python's errors="replace"), so the output is always valid UTF-8. Pieces are not stripped of a
// leading space: this is for text that continues a prompt. Holds a copy of the Tokenizer.
class Detokenizer {
 public:
  explicit Detokenizer(Tokenizer tokenizer, bool render_special = false)
      : tokenizer_(std::move(tokenizer)), render_special_(render_special) {}

  // The text that `id` completes (often "", sometimes several characters). Error: `id` is outside
  // the vocabulary (nothing is consumed).
  Result<std::string> feed(TokenId id);
  // Whatever is still held, as U+FFFD; the Detokenizer is then empty and may be reused.
  std::string flush();

 private:
  Tokenizer tokenizer_;
  bool render_special_;
  std::string pending_;  // bytes of a character not yet complete
};

}  // namespace omni::model
