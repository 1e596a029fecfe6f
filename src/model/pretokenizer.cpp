#include "model/pretokenizer.h"

#include <array>
#include <utility>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "model/unicode.h"

namespace omni::model {
namespace {

// The patterns, as llama.cpp writes them (most come from the models' tokenizer.json). Non-ASCII
// characters are written as \x{...} so that look-alikes (K and the Kelvin sign) stay apart.
constexpr std::string_view kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
// Llama 3's `(?i:'s|...)` spelled out case by case, since PCRE2's caseless matching would also
// fold characters such as U+017F (long s) that the original tokenizer does not.
constexpr std::string_view kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kCjk =
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";
constexpr std::string_view kPoro =
    " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+";

enum class Family {
  kDefault, kGpt2, kLlama3, kLlama3Regex, kQwen2, kDeepseekLlm, kDeepseekCoder, kDeepseekV3,
  kFalcon, kStarcoder, kPoro, kViking, kTekken, kChameleon,
};

struct NamedFamily {
  std::string_view name;
  Family family;
};

constexpr std::array kNames = {
    NamedFamily{"default", Family::kDefault},
    NamedFamily{"gpt-2", Family::kGpt2},
    NamedFamily{"phi-2", Family::kGpt2},
    NamedFamily{"gigachat", Family::kGpt2},
    NamedFamily{"roberta-bpe", Family::kGpt2},
    NamedFamily{"mpt", Family::kGpt2},
    NamedFamily{"olmo", Family::kGpt2},
    NamedFamily{"jais", Family::kGpt2},
    NamedFamily{"llama3", Family::kLlama3},
    NamedFamily{"llama-v3", Family::kLlama3},
    NamedFamily{"llama-bpe", Family::kLlama3},
    NamedFamily{"falcon3", Family::kLlama3},
    NamedFamily{"dbrx", Family::kLlama3Regex},
    NamedFamily{"smaug-bpe", Family::kLlama3Regex},
    NamedFamily{"qwen2", Family::kQwen2},
    NamedFamily{"deepseek-r1-qwen", Family::kQwen2},
    NamedFamily{"stablelm2", Family::kQwen2},
    NamedFamily{"megrez", Family::kQwen2},
    NamedFamily{"deepseek-llm", Family::kDeepseekLlm},
    NamedFamily{"deepseek-coder", Family::kDeepseekCoder},
    NamedFamily{"deepseek-v3", Family::kDeepseekV3},
    NamedFamily{"falcon", Family::kFalcon},
    NamedFamily{"starcoder", Family::kStarcoder},
    NamedFamily{"refact", Family::kStarcoder},
    NamedFamily{"command-r", Family::kStarcoder},
    NamedFamily{"smollm", Family::kStarcoder},
    NamedFamily{"codeshell", Family::kStarcoder},
    NamedFamily{"exaone", Family::kStarcoder},
    NamedFamily{"minerva-7b", Family::kStarcoder},
    NamedFamily{"poro-chat", Family::kPoro},
    NamedFamily{"bloom", Family::kPoro},
    NamedFamily{"gpt3-finnish", Family::kPoro},
    NamedFamily{"viking", Family::kViking},
    NamedFamily{"tekken", Family::kTekken},
    NamedFamily{"chameleon", Family::kChameleon},
};

PreTokenizerSpec spec_of(Family family) {
  auto patterns = [](std::initializer_list<std::string_view> list) {
    return std::vector<std::string>(list.begin(), list.end());
  };
  switch (family) {
    case Family::kDefault:
      return {patterns({"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"})};
    case Family::kGpt2:
      return {patterns({kGpt2})};
    case Family::kLlama3:
      return {patterns({kLlama3}), /*ignore_merges=*/true, /*add_bos=*/true};
    case Family::kLlama3Regex:
      return {patterns({kLlama3})};
    case Family::kQwen2:
      return {patterns({kQwen2})};
    case Family::kDeepseekLlm:
      return {patterns({
          "[\\r\\n]",
          "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
          "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
          "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
          "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
          "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
          "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
          "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"
          "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
          "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
          "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
          "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"
          "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
          "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
          "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
          "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
          "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
          "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
          "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
          "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}"
          "\\x{3000}-\\x{3002}]+",
          "\\s+$",
          kCjk,
          "\\p{N}+",
      })};
    case Family::kDeepseekCoder:
      return {patterns({"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"})};
    case Family::kDeepseekV3:
      // PCRE2's \p{S} takes "~" as Unicode (and Hugging Face) do; llama.cpp's ASCII table for
      // \p{S} leaves it out, so around a "~" the two cut this expression differently.
      return {patterns({
          "\\p{N}{1,3}",
          "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
          "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|"
          "[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|"
          "\\s+(?!\\S)|\\s+",
      })};
    case Family::kFalcon:
      return {patterns({"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"})};
    case Family::kStarcoder:
      return {patterns({"\\p{N}", kGpt2})};
    case Family::kPoro:
      return {patterns({kPoro})};
    case Family::kViking:
      return {patterns({kPoro, "\\p{N}"})};
    case Family::kTekken:
      return {patterns({
                  "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|"
                  "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|"
                  "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
              }),
              /*ignore_merges=*/true, /*add_bos=*/true};
    case Family::kChameleon:
      return {patterns({
                  "<sentinel:[0-9]+>",
                  "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                  "([\\t\\n]|    |  )",
                  "\\p{N}",
                  "[\\p{P}!-/:-@\\[-`{-~]",
                  kGpt2,
              }),
              /*ignore_merges=*/false, /*add_bos=*/true};
  }
  return {};
}

// llama.cpp runs these expressions as std::regex, whose `\s` knows only ASCII whitespace, on text
// in which every other whitespace character has been replaced by \v (0x0B). We match on the same
// stand-in text (see split), so `\s` means exactly these; PCRE2's UCP `\s` would also take U+180E.
constexpr std::string_view kWhitespaceSet = "\\t\\n\\x0B\\f\\r\\x20";

bool is_non_ascii_whitespace(uint32_t cpt) {
  return cpt == 0x85 || cpt == 0xA0 || cpt == 0x1680 || (cpt >= 0x2000 && cpt <= 0x200A) || cpt == 0x2028 ||
         cpt == 0x2029 || cpt == 0x202F || cpt == 0x205F || cpt == 0x3000;
}

// Rewrites `\s` and `\S` as explicit classes of kWhitespaceSet. `\S` inside a class has no such
// rewrite, and no llama.cpp pattern uses it.
Result<std::string> expand_whitespace_escapes(std::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char escaped = pattern[++i];
      if (escaped == 's') {
        out += in_class ? std::string(kWhitespaceSet) : "[" + std::string(kWhitespaceSet) + "]";
      } else if (escaped == 'S') {
        if (in_class)
          return Error{ErrorCode::InvalidArgument,
                       "pre-tokenizer pattern uses \\S inside a class: " + std::string(pattern)};
        out += "[^" + std::string(kWhitespaceSet) + "]";
      } else {
        out += c;
        out += escaped;
      }
      continue;
    }
    if (c == '[' && !in_class) in_class = true;
    else if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

struct PreTokenizer::Pattern {
  pcre2_code* code = nullptr;
  ~Pattern() { pcre2_code_free(code); }
};

Result<PreTokenizerSpec> pretokenizer_spec(std::string_view name) {
  for (const NamedFamily& entry : kNames)
    if (entry.name == name) return spec_of(entry.family);
  std::string known;
  for (const NamedFamily& entry : kNames) known += (known.empty() ? "" : ", ") + std::string(entry.name);
  return Error{ErrorCode::InvalidArgument,
               "unknown pre-tokenizer '" + std::string(name) + "' (tokenizer.ggml.pre); known: " + known};
}

Result<PreTokenizer> PreTokenizer::create(const std::vector<std::string>& patterns) {
  PreTokenizer out;
  for (const std::string& source : patterns) {
    Result<std::string> expanded = expand_whitespace_escapes(source);
    if (!expanded) return expanded.error();
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    // DOLLAR_ENDONLY: `$` means the end of the piece only, as in the ECMAScript regexes llama.cpp
    // runs, not also "before a final newline".
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expanded->data()), expanded->size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &error_code,
                                     &error_offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof message);
      return Error{ErrorCode::InvalidArgument, "pre-tokenizer pattern '" + source + "' does not compile: " +
                   reinterpret_cast<const char*>(message) + " (at offset " +
                   std::to_string(error_offset) + ")"};
    }
    auto pattern = std::make_shared<Pattern>();
    pattern->code = code;
    // JIT is only a speed-up: where it is unavailable the interpreter matches the same way.
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    out.patterns_.push_back(std::move(pattern));
  }
  return out;
}

std::vector<std::string> PreTokenizer::split(std::string_view raw) const {
  const std::string text = replace_invalid_utf8_bytes(raw);
  // The stand-in text the expressions run on, non-ASCII whitespace replaced by \v as llama.cpp
  // does: its explicit ranges (say U+0800..U+4E00) must not take U+2029 or U+3000. Where there is
  // any, `origin` maps each stand-in offset back to `text`.
  bool substituted = false;
  std::string stand_in;
  std::vector<size_t> origin;
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cpt = 0;
    const size_t length = decode_utf8(text, pos, cpt);  // >= 1: the text is well-formed
    const bool whitespace = is_non_ascii_whitespace(cpt);
    if (whitespace && !substituted) {
      substituted = true;
      stand_in.assign(text, 0, pos);
      for (size_t i = 0; i < pos; ++i) origin.push_back(i);
    }
    if (substituted) {
      if (whitespace) {
        origin.push_back(pos);
        stand_in += '\v';
      } else {
        for (size_t i = 0; i < length; ++i) origin.push_back(pos + i);
        stand_in.append(text, pos, length);
      }
    }
    pos += length;
  }
  origin.push_back(text.size());
  const std::string_view subject = substituted ? std::string_view(stand_in) : std::string_view(text);

  using Span = std::pair<size_t, size_t>;  // [begin, end) in `subject`
  std::vector<Span> pieces;
  if (!subject.empty()) pieces.emplace_back(0, subject.size());
  std::vector<Span> next;
  for (const auto& pattern : patterns_) {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match_data(
        pcre2_match_data_create_from_pattern(pattern->code, nullptr), &pcre2_match_data_free);
    pcre2_match_data* match = match_data.get();
    next.clear();
    for (auto [begin, end] : pieces) {
      // Each piece is matched as a subject of its own, so anchors and lookarounds stop at its edges.
      auto piece = reinterpret_cast<PCRE2_SPTR>(subject.data() + begin);
      const size_t length = end - begin;
      size_t gap = 0;  // start of the stretch not yet covered by a match
      size_t from = 0;
      while (from < length) {
        int rc = pcre2_match(pattern->code, piece, length, from, PCRE2_NO_UTF_CHECK, match, nullptr);
        // A JIT failure (its stack is small) is retried by the interpreter; if that fails too the
        // rest of the piece stays whole.
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
          rc = pcre2_match(pattern->code, piece, length, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, match,
                           nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
        const size_t match_begin = ovector[0];
        const size_t match_end = ovector[1];
        if (match_end == match_begin) {  // an empty match cuts nothing: look again one character on
          if (match_begin >= length) break;
          from = match_begin + utf8_sequence_length(static_cast<uint8_t>(subject[begin + match_begin]));
          continue;
        }
        if (match_begin > gap) next.emplace_back(begin + gap, begin + match_begin);
        next.emplace_back(begin + match_begin, begin + match_end);
        gap = from = match_end;
      }
      if (gap < length) next.emplace_back(begin + gap, end);
    }
    pieces.swap(next);
  }
  std::vector<std::string> words;
  words.reserve(pieces.size());
  for (auto [begin, end] : pieces) {
    size_t text_begin = substituted ? origin[begin] : begin;
    size_t text_end = substituted ? origin[end] : end;
    words.emplace_back(text, text_begin, text_end - text_begin);
  }
  return words;
}

}  // namespace omni::model
