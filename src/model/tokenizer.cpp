#include "model/tokenizer.h"

#include <algorithm>
#include <set>
#include <variant>

#include "model/tokenizer_internal.h"
#include "model/unicode.h"

namespace omni::model {

using detail::BpeEncoder;
using detail::SpmEncoder;
using detail::Vocab;

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space

// A stretch of the input: plain text to encode, or a special token already recognised.
struct Fragment {
  std::optional<TokenId> token;
  size_t begin = 0;
  size_t length = 0;
};

// C's isspace in the "C" locale, which is what llama.cpp strips after special tokens.
bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

uint16_t attr_of_token_type(int64_t type) {
  switch (type) {
    case 1: return detail::kAttrNormal;
    case 2: return detail::kAttrUnknown;
    case 3: return detail::kAttrControl;
    case 4: return detail::kAttrUserDefined;
    case 5: return detail::kAttrUnused;
    case 6: return detail::kAttrByte;
    default: return 0;  // undefined: stands for nothing when decoding
  }
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  out.append(text, pos);
  return out;
}

// The bytes a byte-level BPE token stands for. Characters outside GPT-2's alphabet (which
// llama.cpp renders as "[UNK_BYTE_...]") are kept as their own UTF-8.
std::string bytes_of_gpt2_text(std::string_view text) {
  std::string out;
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cpt = 0;
    size_t length = decode_utf8(text, pos, cpt);
    if (length == 0) {
      out += text[pos++];
      continue;
    }
    if (std::optional<uint8_t> byte = gpt2_byte_of_char(cpt)) out += static_cast<char>(*byte);
    else out.append(text.substr(pos, length));
    pos += length;
  }
  return out;
}

// "<0x0A>" -> '\n'; nullopt if the text is not of that form.
std::optional<char> byte_of_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int high = hex(text[3]);
  int low = hex(text[4]);
  if (high < 0 || low < 0) return std::nullopt;
  return static_cast<char>(high * 16 + low);
}

// Reads an optional token id key. Absent or outside the vocabulary: nullopt (llama.cpp then keeps
// its default). Present with a non-integer type: an Error.
Result<std::optional<TokenId>> read_token_id(const gguf::Metadata& metadata, std::string_view key,
                                             size_t n_vocab) {
  const gguf::Value* value = metadata.find(key);
  if (value == nullptr) return std::optional<TokenId>();
  std::optional<uint64_t> id = value->as_uint();
  if (!id)
    return Error{ErrorCode::Corruption,
                 "metadata key '" + std::string(key) + "' is not a token id: " + value->to_display()};
  if (*id >= n_vocab) return std::optional<TokenId>();
  return std::optional<TokenId>(static_cast<TokenId>(*id));
}

Result<std::optional<bool>> read_flag(const gguf::Metadata& metadata, std::string_view key) {
  if (!metadata.contains(key)) return std::optional<bool>();
  Result<bool> flag = metadata.get_bool(key);
  if (!flag) return flag.error();
  return std::optional<bool>(*flag);
}

// Token roles that llama.cpp also recognises by text when no key names them. A token found that way
// becomes a control token (which is all the FIM prefix, suffix and middle roles are read for).
struct Role {
  std::string_view key;
  std::string_view legacy_key;  // what older files call it, if anything
  std::vector<std::string_view> texts;
  bool ends_generation;
};

const std::vector<Role>& roles() {
  static const std::vector<Role> kRoles = {
      {"tokenizer.ggml.eot_token_id", {},
       {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"},  // DeepSeek's
       true},
      {"tokenizer.ggml.eom_token_id", {}, {"<|eom_id|>"}, true},
      {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id",
       {"<|fim_prefix|>", "<fim-prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>"},
       false},
      {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id",
       {"<|fim_suffix|>", "<fim-suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>"},
       false},
      {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id",
       {"<|fim_middle|>", "<fim-middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>"},
       false},
      {"tokenizer.ggml.fim_pad_token_id", {}, {"<|fim_pad|>", "<fim-pad>", "<PAD>"}, true},
      {"tokenizer.ggml.fim_rep_token_id", {}, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}, true},
      {"tokenizer.ggml.fim_sep_token_id", {}, {"<|file_sep|>"}, true},
  };
  return kRoles;
}

// Texts that end generation wherever they occur in a vocabulary.
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
};

std::string lowercase(std::string text) {
  for (char& c : text)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

// What llama.cpp assumes for a kind of model before the metadata's keys are applied.
struct Defaults {
  std::optional<TokenId> bos;
  std::optional<TokenId> eos;
  std::optional<TokenId> unk;
  bool add_bos = false;
  bool add_space_prefix = false;
};

}  // namespace

struct Tokenizer::Impl {
  Kind kind;
  Vocab vocab;
  std::variant<SpmEncoder, BpeEncoder> encoder;
  std::optional<TokenId> bos;
  std::optional<TokenId> eos;
  std::optional<TokenId> eot;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  std::set<TokenId> end_of_generation;
  std::vector<TokenId> special_tokens;  // control, user-defined and unknown: longest text first
  std::vector<std::string> pieces;      // each token's bytes, special tokens rendered
  size_t max_piece_bytes = 1;

  Impl(Kind k, Vocab v, std::variant<SpmEncoder, BpeEncoder> e)
      : kind(k), vocab(std::move(v)), encoder(std::move(e)) {}

  Result<void> read_special_tokens(const gguf::Metadata& metadata, const Defaults& defaults);
  void collect_special_tokens(const gguf::Metadata& metadata);
  void build_pieces();
  // `text` cut at the special tokens it holds (all of them, or the user-defined ones only unless
  // parse_special), leaving out any token in `excluded`.
  std::vector<Fragment> split_special(std::string_view text, bool parse_special,
                                      const std::set<TokenId>* excluded = nullptr) const;
  // The ids of `text` cut into `fragments` (special tokens and stretches of plain text).
  std::vector<TokenId> encode_fragments(std::string_view text, const std::vector<Fragment>& fragments,
                                        bool add_special, size_t stop_after = SIZE_MAX) const;
};

namespace {

Result<Vocab> read_vocab(const gguf::Metadata& metadata) {
  Result<const gguf::Array*> tokens = metadata.get_array("tokenizer.ggml.tokens");
  if (!tokens) return tokens.error();
  if ((*tokens)->elem_type != gguf::ValueType::STRING)
    return Error{ErrorCode::Corruption, "tokenizer.ggml.tokens is not an array of strings"};
  const std::vector<std::string>& texts = (*tokens)->strings;
  if (texts.empty()) return Error{ErrorCode::Corruption, "tokenizer.ggml.tokens is empty"};
  const size_t n = texts.size();

  Vocab vocab;
  vocab.score.assign(n, 0.0f);
  vocab.attr.assign(n, detail::kAttrNormal);
  if (metadata.contains("tokenizer.ggml.scores")) {
    Result<const gguf::Array*> array = metadata.get_array("tokenizer.ggml.scores");
    if (!array) return array.error();
    std::optional<std::vector<float>> scores = (*array)->to_floats();
    if (!scores || scores->size() != n)
      return Error{ErrorCode::Corruption,
                   "tokenizer.ggml.scores must hold " + std::to_string(n) + " numbers, one per token"};
    vocab.score = std::move(*scores);
  }
  if (metadata.contains("tokenizer.ggml.token_type")) {
    Result<const gguf::Array*> array = metadata.get_array("tokenizer.ggml.token_type");
    if (!array) return array.error();
    std::optional<std::vector<int64_t>> types = (*array)->to_ints();
    if (!types || types->size() != n)
      return Error{ErrorCode::Corruption,
                   "tokenizer.ggml.token_type must hold " + std::to_string(n) + " integers, one per token"};
    for (size_t i = 0; i < n; ++i) vocab.attr[i] = attr_of_token_type((*types)[i]);
  }

  vocab.text.reserve(n);
  vocab.id_of_text.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // An empty text could never be matched nor split on; llama.cpp renames it the same way.
    std::string text = texts[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : texts[i];
    auto [it, inserted] = vocab.id_of_text.try_emplace(text, static_cast<TokenId>(i));
    if (!inserted)
      return Error{ErrorCode::Corruption, "tokenizer.ggml.tokens has '" + text + "' twice (ids " +
                                              std::to_string(it->second) + " and " + std::to_string(i) + ")"};
    vocab.text.push_back(std::move(text));
  }
  return vocab;
}

}  // namespace

Result<Tokenizer> Tokenizer::from_metadata(const gguf::Metadata& metadata) {
  Result<std::string> model = metadata.get_string("tokenizer.ggml.model");
  if (!model) return model.error();
  if (*model != "llama" && *model != "gpt2")
    return Error{ErrorCode::InvalidArgument,
                 "unknown tokenizer model '" + *model + "' (tokenizer.ggml.model); supported: llama, gpt2"};

  Result<Vocab> vocab = read_vocab(metadata);
  if (!vocab) return vocab.error();
  auto id_if_present = [n = vocab->size()](TokenId id) {
    return static_cast<size_t>(id) < n ? std::optional<TokenId>(id) : std::nullopt;
  };

  std::shared_ptr<Impl> impl;
  Defaults defaults;
  if (*model == "llama") {
    defaults = {id_if_present(1), id_if_present(2), id_if_present(0), /*add_bos=*/true,
                /*add_space_prefix=*/true};
    SpmEncoder spm(*vocab);
    impl = std::make_shared<Impl>(Kind::kSentencePiece, std::move(*vocab), std::move(spm));
  } else {
    // Without a pre-tokenizer name llama.cpp falls back to its "default" expressions and warns that
    // quality suffers; files like GPT-NeoX's predate the key and were trained with GPT-2's.
    std::string pre = "gpt-2";
    if (metadata.contains("tokenizer.ggml.pre")) {
      Result<std::string> name = metadata.get_string("tokenizer.ggml.pre");
      if (!name) return name.error();
      pre = *name;
    }
    Result<PreTokenizerSpec> spec = pretokenizer_spec(pre);
    if (!spec) return spec.error();
    Result<const gguf::Array*> merges = metadata.get_array("tokenizer.ggml.merges");
    if (!merges) return merges.error();
    Result<BpeEncoder> bpe = BpeEncoder::create(**merges, *spec);
    if (!bpe) return bpe.error();
    defaults = {id_if_present(11), id_if_present(11), std::nullopt, spec->add_bos, /*add_space_prefix=*/false};
    impl = std::make_shared<Impl>(Kind::kBytePairEncoding, std::move(*vocab), std::move(*bpe));
  }
  if (Result<void> read = impl->read_special_tokens(metadata, defaults); !read) return read.error();
  impl->collect_special_tokens(metadata);
  impl->build_pieces();
  return Tokenizer(std::move(impl));
}

Result<void> Tokenizer::Impl::read_special_tokens(const gguf::Metadata& metadata, const Defaults& defaults) {
  auto read_id = [&](std::string_view key, std::optional<TokenId>& id) -> Result<void> {
    Result<std::optional<TokenId>> read = read_token_id(metadata, key, vocab.size());
    if (!read) return read.error();
    if (*read) id = *read;
    return {};
  };
  bos = defaults.bos;
  eos = defaults.eos;
  vocab.unk = defaults.unk;
  for (auto [key, id] : {std::pair{"tokenizer.ggml.bos_token_id", &bos},
                         std::pair{"tokenizer.ggml.eos_token_id", &eos},
                         std::pair{"tokenizer.ggml.unknown_token_id", &vocab.unk}}) {
    if (Result<void> read = read_id(key, *id); !read) return read.error();
  }

  Result<std::optional<bool>> add_bos_key = read_flag(metadata, "tokenizer.ggml.add_bos_token");
  Result<std::optional<bool>> add_eos_key = read_flag(metadata, "tokenizer.ggml.add_eos_token");
  Result<std::optional<bool>> add_space_key = read_flag(metadata, "tokenizer.ggml.add_space_prefix");
  for (const auto* flag : {&add_bos_key, &add_eos_key, &add_space_key})
    if (!*flag) return flag->error();
  add_bos = add_bos_key->value_or(defaults.add_bos);
  add_eos = add_eos_key->value_or(false);
  add_space_prefix = add_space_key->value_or(defaults.add_space_prefix);
  if (add_bos && !bos) return Error{ErrorCode::Corruption, "the vocabulary asks for a BOS token but has none"};
  if (add_eos && !eos) return Error{ErrorCode::Corruption, "the vocabulary asks for an EOS token but has none"};

  for (const Role& role : roles()) {
    std::optional<TokenId> id;
    if (Result<void> read = read_id(role.key, id); !read) return read.error();
    if (!id && !role.legacy_key.empty())
      if (Result<void> read = read_id(role.legacy_key, id); !read) return read.error();
    if (!id) {
      for (std::string_view text : role.texts) {
        if ((id = vocab.find(text))) {
          vocab.attr[*id] |= detail::kAttrControl;
          break;
        }
      }
    }
    if (role.key == "tokenizer.ggml.eot_token_id") eot = id;
    if (id && role.ends_generation) end_of_generation.insert(*id);
  }
  for (std::string_view text : kEndOfGenerationTexts) {
    if (std::optional<TokenId> id = vocab.find(text)) {
      vocab.attr[*id] |= detail::kAttrControl;
      end_of_generation.insert(*id);
    }
  }
  if (eos) end_of_generation.insert(*eos);
  return {};
}

void Tokenizer::Impl::collect_special_tokens(const gguf::Metadata& metadata) {
  for (TokenId id = 0; id < static_cast<TokenId>(vocab.size()); ++id)
    if (vocab.attr[id] & (detail::kAttrControl | detail::kAttrUserDefined | detail::kAttrUnknown))
      special_tokens.push_back(id);
  std::stable_sort(special_tokens.begin(), special_tokens.end(),
                   [&](TokenId a, TokenId b) { return vocab.text[a].size() > vocab.text[b].size(); });

  // Phi-3's added tokens swallow the whitespace after them; GGUF has no field for that, so
  // llama.cpp recognises the model by name, and so do we.
  Result<std::string> name = metadata.get_string("general.name");
  const std::string model_name = name ? lowercase(*name) : std::string();
  if (model_name.find("phi-3") != std::string::npos || model_name.find("phi3") != std::string::npos) {
    for (TokenId id : special_tokens) vocab.attr[id] |= detail::kAttrRStrip;
    if (auto id = vocab.find("</s>")) vocab.attr[*id] |= detail::kAttrRStrip;
    for (std::string_view text : {"<unk>", "<s>", "<|endoftext|>"})
      if (auto id = vocab.find(text)) vocab.attr[*id] &= static_cast<uint16_t>(~detail::kAttrRStrip);
  }
}

void Tokenizer::Impl::build_pieces() {
  pieces.resize(vocab.size());
  for (size_t id = 0; id < vocab.size(); ++id) {
    const std::string& text = vocab.text[id];
    const uint16_t attr = vocab.attr[id];
    if (attr & (detail::kAttrControl | detail::kAttrUserDefined | detail::kAttrUnknown)) {
      pieces[id] = text;
    } else if (attr & detail::kAttrNormal) {
      pieces[id] = kind == Kind::kSentencePiece ? replace_all(text, kSpmSpace, " ") : bytes_of_gpt2_text(text);
    } else if ((attr & detail::kAttrByte) && kind == Kind::kSentencePiece) {
      std::optional<char> byte = byte_of_byte_token(text);
      pieces[id] = byte ? std::string(1, *byte) : text;
    }
    // Unused and undefined tokens (and byte tokens of a BPE vocabulary) stand for nothing.
    max_piece_bytes = std::max(max_piece_bytes, pieces[id].size());
  }
}

std::vector<Fragment> Tokenizer::Impl::split_special(std::string_view text, bool parse_special,
                                                     const std::set<TokenId>* excluded) const {
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({std::nullopt, 0, text.size()});
  std::vector<Fragment> next;
  // One special token at a time, longest first, through every stretch of text still plain: this
  // is llama.cpp's order, and it decides overlaps (a longer token anywhere beats a shorter one).
  for (TokenId id : special_tokens) {
    const uint16_t attr = vocab.attr[id];
    // User-defined tokens are matched even when special tokens are not parsed, as Hugging Face's
    // added tokens are.
    if (!parse_special && (attr & (detail::kAttrControl | detail::kAttrUnknown))) continue;
    if (excluded && excluded->count(id)) continue;
    const std::string& needle = vocab.text[id];
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token) {
        next.push_back(fragment);
        continue;
      }
      size_t pos = fragment.begin;
      const size_t end = fragment.begin + fragment.length;
      for (;;) {
        size_t hit = text.substr(pos, end - pos).find(needle);
        if (hit == std::string_view::npos) break;
        hit += pos;
        if (hit > pos) next.push_back({std::nullopt, pos, hit - pos});
        next.push_back({id, 0, 0});
        pos = hit + needle.size();
        if (attr & detail::kAttrRStrip)
          while (pos < end && is_ascii_space(text[pos])) ++pos;
      }
      if (pos < end) next.push_back({std::nullopt, pos, end - pos});
    }
    fragments.swap(next);
  }
  return fragments;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special,
                                       size_t stop_after) const {
  return impl_->encode_fragments(text, impl_->split_special(text, parse_special), add_special, stop_after);
}

std::vector<TokenId> Tokenizer::encode(std::span<const TextSpan> spans, bool add_special, size_t stop_after) const {
  const Impl& impl = *impl_;
  std::string text;
  std::vector<size_t> offsets;
  for (const TextSpan& span : spans) {
    offsets.push_back(text.size());
    text.append(span.text);
  }
  // The markup first: the tokens it uses, and those that steer the sequence, are what plain text
  // must never yield.
  std::vector<std::vector<Fragment>> split(spans.size());
  std::set<TokenId> reserved = impl.end_of_generation;
  for (const auto& id : {impl.bos, impl.eos, impl.eot})
    if (id) reserved.insert(*id);
  for (size_t i = 0; i < spans.size(); ++i) {
    if (!spans[i].special) continue;
    split[i] = impl.split_special(spans[i].text, /*parse_special=*/true);
    for (const Fragment& f : split[i])
      if (f.token) reserved.insert(*f.token);
  }
  for (size_t i = 0; i < spans.size(); ++i)
    if (!spans[i].special) split[i] = impl.split_special(spans[i].text, /*parse_special=*/false, &reserved);

  std::vector<Fragment> fragments;
  // A special token that takes the whitespace after it takes it from the next span too, as it
  // would from the concatenation.
  bool strip_next = false;
  for (size_t i = 0; i < spans.size(); ++i) {
    for (const Fragment& f : split[i]) {
      if (f.token) {
        fragments.push_back(f);
        strip_next = (impl.vocab.attr[*f.token] & detail::kAttrRStrip) != 0;
        continue;
      }
      size_t begin = offsets[i] + f.begin, length = f.length;
      if (strip_next) {
        while (length > 0 && is_ascii_space(text[begin])) {
          ++begin;
          --length;
        }
        if (length == 0) continue;
        strip_next = false;
      }
      // Plain text that continues the previous span's is one stretch with it.
      if (!fragments.empty() && !fragments.back().token && fragments.back().begin + fragments.back().length == begin)
        fragments.back().length += length;
      else
        fragments.push_back({std::nullopt, begin, length});
    }
  }
  return impl.encode_fragments(text, fragments, add_special, stop_after);
}

std::vector<TokenId> Tokenizer::Impl::encode_fragments(std::string_view text, const std::vector<Fragment>& fragments,
                                                       bool add_special, size_t stop_after) const {
  std::vector<TokenId> out;
  if (add_special && add_bos) out.push_back(*bos);
  // SentencePiece puts a space before the text, and again after each special token.
  bool after_special = true;
  for (const Fragment& fragment : fragments) {
    if (fragment.token) {
      out.push_back(*fragment.token);
      after_special = true;
      if (out.size() > stop_after) return out;
      continue;
    }
    std::string_view plain = text.substr(fragment.begin, fragment.length);
    if (const auto* spm = std::get_if<SpmEncoder>(&encoder)) {
      std::string escaped = add_space_prefix && after_special ? std::string(kSpmSpace) : std::string();
      for (char c : plain) {
        if (c == ' ') escaped += kSpmSpace;
        else escaped += c;
      }
      spm->encode(vocab, escaped, out);
    } else {
      std::get<BpeEncoder>(encoder).encode(vocab, plain, out);
    }
    after_special = false;
    if (out.size() > stop_after) return out;
  }
  if (add_special && add_eos) out.push_back(*eos);
  return out;
}

std::string Tokenizer::token_to_piece(TokenId id, bool render_special) const {
  const Impl& impl = *impl_;
  if (!impl.vocab.contains(id)) return {};
  if (!render_special && (impl.vocab.attr[id] & (detail::kAttrControl | detail::kAttrUnknown))) return {};
  return impl.pieces[id];
}

Result<std::string> Tokenizer::decode(std::span<const TokenId> ids, bool render_special) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!impl_->vocab.contains(ids[i]))
      return Error{ErrorCode::InvalidArgument, "token id " + std::to_string(ids[i]) + " (at position " +
                                                   std::to_string(i) + ") is outside the vocabulary of " +
                                                   std::to_string(n_vocab()) + " tokens"};
    std::string piece = token_to_piece(ids[i], render_special);
    // llama.cpp strips the prefix space from the first piece, whatever token that is.
    if (i == 0 && impl_->add_space_prefix && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
  }
  return out;
}

Tokenizer::Kind Tokenizer::kind() const { return impl_->kind; }
size_t Tokenizer::n_vocab() const { return impl_->vocab.size(); }
size_t Tokenizer::max_token_bytes() const { return impl_->max_piece_bytes; }
std::optional<TokenId> Tokenizer::bos() const { return impl_->bos; }
std::optional<TokenId> Tokenizer::eos() const { return impl_->eos; }
std::optional<TokenId> Tokenizer::eot() const { return impl_->eot; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }

bool Tokenizer::is_end_of_generation(TokenId id) const { return impl_->end_of_generation.count(id) > 0; }

bool Tokenizer::is_control(TokenId id) const {
  return impl_->vocab.contains(id) && (impl_->vocab.attr[id] & detail::kAttrControl);
}

Result<std::string> Detokenizer::feed(TokenId id) {
  if (id < 0 || static_cast<size_t>(id) >= tokenizer_.n_vocab())
    return Error{ErrorCode::InvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                 std::to_string(tokenizer_.n_vocab()) + " tokens"};
  pending_ += tokenizer_.token_to_piece(id, render_special_);
  std::string out;
  pending_.erase(0, append_valid_utf8(pending_, /*final=*/false, out));
  return out;
}

std::string Detokenizer::flush() {
  std::string out;
  append_valid_utf8(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

}  // namespace omni::model
