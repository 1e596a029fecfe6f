// Pre-tokenizers of byte-level BPE vocabularies: the regular expressions that cut text into words
// before BPE merges run inside each word, chosen by the GGUF key `tokenizer.ggml.pre`.
//
// The expressions and their semantics are llama.cpp's (llama-vocab.cpp): a list of patterns applied
// in turn, each one cutting every piece the previous ones left into its matches and the stretches
// between them (kept as pieces of their own). They are compiled once with PCRE2 (UTF and UCP) and a
// PreTokenizer is immutable, so one may split on many threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace omni::model {

// What one `tokenizer.ggml.pre` name stands for.
struct PreTokenizerSpec {
  std::vector<std::string> patterns;  // applied in order
  bool ignore_merges = false;         // a word that is itself a token is emitted without merging
  bool add_bos = false;               // default for `tokenizer.ggml.add_bos_token` when absent
};

// The spec for a `tokenizer.ggml.pre` value; an Error naming the value if it is not one we know.
Result<PreTokenizerSpec> pretokenizer_spec(std::string_view name);

class PreTokenizer {
 public:
  // Compiles `patterns`; an Error quotes the pattern PCRE2 rejected and why.
  static Result<PreTokenizer> create(const std::vector<std::string>& patterns);

  // Cuts `text` into words whose concatenation is `text`, except that bytes which are not
  // well-formed UTF-8 come back as U+FFFD, one per byte, as llama.cpp does (it decodes overlong
  // forms and surrogates instead).
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Pattern;
  std::vector<std::shared_ptr<const Pattern>> patterns_;
};

}  // namespace omni::model
