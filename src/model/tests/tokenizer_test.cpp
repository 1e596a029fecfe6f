// Tokenizer tests against llama.cpp's tokenizer test data (shared/vocab), the reference generations
// (shared/reference) and hand-derived pre-tokenizer splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "gguf/reader.h"
#include "model/pretokenizer.h"
#include "model/tokenizer.h"
#include "model/unicode.h"

namespace omni::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kShared = OMNI_SHARED_DIR;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Printable form of a test string for failure messages.
std::string escaped(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '"') out += "\\\"";
    else out += c;
  }
  return out + "\"";
}

std::string ids_text(const std::vector<TokenId>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

// Tokenizers are loaded once per file: the BPE ones build merge tables of 50k-100k entries.
const Tokenizer* tokenizer_of(const fs::path& path) {
  static std::mutex mutex;
  static std::map<fs::path, Tokenizer> cache;
  std::lock_guard lock(mutex);
  if (auto it = cache.find(path); it != cache.end()) return &it->second;
  Result<gguf::File> file = gguf::File::open(path.string());
  if (!file) {
    ADD_FAILURE() << file.error().message;
    return nullptr;
  }
  Result<Tokenizer> tokenizer = Tokenizer::from_metadata(file->metadata());
  if (!tokenizer) {
    ADD_FAILURE() << path << ": " << tokenizer.error().message;
    return nullptr;
  }
  return &cache.emplace(path, std::move(*tokenizer)).first->second;
}

fs::path vocab_path(const std::string& name) { return kShared / "vocab" / ("ggml-vocab-" + name + ".gguf"); }

// llama.cpp's test-tokenizer-0 format: test strings separated by "\n__ggml_vocab_test__\n" (so a
// string never includes the newline before a separator), and one line of ids per string.
std::vector<std::string> read_vocab_inputs(const fs::path& path) {
  const std::string raw = read_text_file(path);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t next = raw.find(separator, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + separator.size();
  }
  return inputs;
}

std::vector<std::vector<TokenId>> read_vocab_outputs(const fs::path& path) {
  std::vector<std::vector<TokenId>> outputs;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<TokenId> ids;
    for (TokenId id; words >> id;) ids.push_back(id);
    outputs.push_back(std::move(ids));
  }
  return outputs;
}

std::vector<std::string> shared_test_strings() {
  return read_vocab_inputs(kShared / "vocab" / "ggml-vocab-llama-spm.gguf.inp");
}

// --- llama.cpp's tokenizer test cases ------------------------------------------------------------

class TokenizerVocabTest : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerVocabTest, MatchesLlamaCppIds) {
  const Tokenizer* tokenizer = tokenizer_of(vocab_path(GetParam()));
  ASSERT_NE(tokenizer, nullptr);
  std::vector<std::string> inputs = read_vocab_inputs(vocab_path(GetParam()).string() + ".inp");
  std::vector<std::vector<TokenId>> outputs = read_vocab_outputs(vocab_path(GetParam()).string() + ".out");
  ASSERT_EQ(inputs.size(), outputs.size());
  ASSERT_EQ(inputs.size(), 46u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    // test-tokenizer-0 tokenizes with add_special=false, parse_special=false.
    std::vector<TokenId> got = tokenizer->encode(inputs[i], false, false);
    if (got != outputs[i])
      ADD_FAILURE() << "string " << i << ": " << escaped(inputs[i]) << "\n  expected " << ids_text(outputs[i])
                    << "\n  got      " << ids_text(got);
  }
}

TEST_P(TokenizerVocabTest, DecodeRoundTrips) {
  const Tokenizer* tokenizer = tokenizer_of(vocab_path(GetParam()));
  ASSERT_NE(tokenizer, nullptr);
  for (const std::string& text : read_vocab_inputs(vocab_path(GetParam()).string() + ".inp")) {
    Result<std::string> decoded = tokenizer->decode(tokenizer->encode(text, false, false));
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(*decoded, text) << escaped(text);
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, TokenizerVocabTest,
                         testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm", "falcon", "starcoder"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Vocabularies without expected ids: they load, and decoding gives back the text.
class TokenizerVocabWithoutCasesTest : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerVocabWithoutCasesTest, LoadsAndRoundTrips) {
  const Tokenizer* tokenizer = tokenizer_of(vocab_path(GetParam()));
  ASSERT_NE(tokenizer, nullptr);
  std::vector<std::string> texts = shared_test_strings();
  texts.push_back("int main() {\n    return 0;\n}\n");
  texts.push_back("   leading and trailing   ");
  for (const std::string& text : texts) {
    std::vector<TokenId> ids = tokenizer->encode(text, false, false);
    Result<std::string> decoded = tokenizer->decode(ids);
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(*decoded, text) << escaped(text) << " -> " << ids_text(ids);
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, TokenizerVocabWithoutCasesTest, testing::Values("baichuan", "gpt-neox"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(TokenizerSpecialTokensTest, GptNeoxUserDefinedSpaceRunsAlwaysMatch) {
  // GPT-NeoX's runs of spaces are user-defined tokens: matched before pre-tokenizing even when
  // special tokens are not parsed, longest first.
  const Tokenizer* tokenizer = tokenizer_of(vocab_path("gpt-neox"));
  ASSERT_NE(tokenizer, nullptr);
  std::vector<TokenId> a = tokenizer->encode("a", false, false);
  std::vector<TokenId> b = tokenizer->encode("b", false, false);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(tokenizer->encode("a   b", false, false), (std::vector<TokenId>{a[0], 50275, b[0]}));
  EXPECT_EQ(tokenizer->token_to_piece(50275), "   ");
}

// --- reference generations -----------------------------------------------------------------------

// Ids from a JSON array, or from a string holding a list ("[1, 2]") as some tools write it.
std::vector<TokenId> ids_of(const json& value) {
  std::vector<TokenId> ids;
  if (value.is_array()) {
    for (const json& id : value) ids.push_back(id.get<TokenId>());
    return ids;
  }
  const std::string text = value.get<std::string>();
  std::regex number("-?[0-9]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it)
    ids.push_back(std::stoi(it->str()));
  return ids;
}

// The chosen ids of the greedy steps: a JSON array of {"id": N, ...}, or its Python repr.
std::vector<TokenId> step_ids_of(const json& steps) {
  std::vector<TokenId> ids;
  if (steps.is_array()) {
    for (const json& step : steps) ids.push_back(step.at("id").get<TokenId>());
    return ids;
  }
  const std::string text = steps.get<std::string>();
  std::regex id("'id': (-?[0-9]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), id); it != std::sregex_iterator(); ++it)
    ids.push_back(std::stoi((*it)[1].str()));
  return ids;
}

std::vector<std::string> reference_files() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(kShared / "reference"))
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

class TokenizerReferenceTest : public testing::TestWithParam<std::string> {
 protected:
  json reference() const { return json::parse(read_text_file(kShared / "reference" / (GetParam() + ".json"))); }
  const Tokenizer* tokenizer() const {
    return tokenizer_of(kShared / "models" / reference().at("model").get<std::string>());
  }
};

TEST_P(TokenizerReferenceTest, PromptTokens) {
  const Tokenizer* tokenizer = this->tokenizer();
  ASSERT_NE(tokenizer, nullptr);
  const json ref = reference();  // iterating reference().at(...) would read a destroyed temporary
  for (const json& prompt : ref.at("prompts")) {
    const std::string text = prompt.at("prompt").get<std::string>();
    const std::vector<TokenId> expected = ids_of(prompt.at("prompt_tokens"));
    // The reference parsed special tokens: Phi-3's "<|user|>" is a control token and is one id
    // there. (For the other models no prompt holds a special token, so both settings agree.)
    EXPECT_EQ(tokenizer->encode(text, true, true), expected) << escaped(text);
  }
}

TEST_P(TokenizerReferenceTest, GreedyStepsDetokenizeToText) {
  const Tokenizer* tokenizer = this->tokenizer();
  ASSERT_NE(tokenizer, nullptr);
  const json ref = reference();  // iterating reference().at(...) would read a destroyed temporary
  for (const json& prompt : ref.at("prompts")) {
    const std::string expected = prompt.at("text").get<std::string>();
    const std::vector<TokenId> ids = step_ids_of(prompt.at("steps"));
    ASSERT_FALSE(ids.empty());
    // Where the reference lists fewer than its 32 steps (three qwen2 prompts), its generator left
    // out the steps whose piece was not UTF-8 on its own, yet its text has them (as U+FFFD): that
    // text cannot be rebuilt from the ids listed.
    if (ids.size() < 32) continue;
    // The continuation is every piece as it is (no space stripped), bytes that are not UTF-8
    // shown as U+FFFD: exactly what the streaming Detokenizer gives.
    Detokenizer stream(*tokenizer);
    std::string streamed;
    for (TokenId id : ids) {
      Result<std::string> text = stream.feed(id);
      ASSERT_TRUE(text.ok()) << text.error().message;
      streamed += *text;
    }
    streamed += stream.flush();
    EXPECT_EQ(streamed, expected) << "ids " << ids_text(ids);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TokenizerReferenceTest, testing::ValuesIn(reference_files()), [](const auto& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
});

// --- special tokens ------------------------------------------------------------------------------

TEST(TokenizerSpecialTokensTest, ParsedOnlyWhenAsked) {
  const Tokenizer* llama = tokenizer_of(vocab_path("llama-spm"));
  ASSERT_NE(llama, nullptr);
  // After a special token SentencePiece adds the space prefix again: "Hello" is "▁Hello" (15043).
  EXPECT_EQ(llama->encode("<s>Hello</s>", false, true), (std::vector<TokenId>{1, 15043, 2}));
  std::vector<TokenId> literal = llama->encode("<s>Hello</s>", false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 1), 0);
  EXPECT_EQ(*llama->decode(literal), "<s>Hello</s>");
  EXPECT_EQ(*llama->decode(std::vector<TokenId>{1, 15043, 2}), " Hello");
  EXPECT_EQ(*llama->decode(std::vector<TokenId>{1, 15043, 2}, true), "<s> Hello</s>");

  const Tokenizer* gpt2 = tokenizer_of(vocab_path("gpt-2"));
  ASSERT_NE(gpt2, nullptr);
  EXPECT_EQ(gpt2->encode("a<|endoftext|>b", false, true), (std::vector<TokenId>{64, 50256, 65}));
  std::vector<TokenId> plain = gpt2->encode("a<|endoftext|>b", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_EQ(*gpt2->decode(plain), "a<|endoftext|>b");
}

TEST(TokenizerSpecialTokensTest, Phi3TokensSwallowFollowingSpace) {
  const Tokenizer* phi3 = tokenizer_of(vocab_path("phi-3"));
  ASSERT_NE(phi3, nullptr);
  // "<|user|>" (32010) strips the space after it; the text then gets the usual prefix space back.
  EXPECT_EQ(phi3->encode("<|user|> hello", false, true), (std::vector<TokenId>{32010, 22172}));
  EXPECT_EQ(phi3->encode("<|user|>hello", false, true), (std::vector<TokenId>{32010, 22172}));
  EXPECT_EQ(phi3->eot(), 32007);  // "<|end|>", found by its text
  EXPECT_TRUE(phi3->is_end_of_generation(32007));
  EXPECT_TRUE(phi3->is_end_of_generation(32000));
  EXPECT_FALSE(phi3->is_end_of_generation(32010));
  EXPECT_TRUE(phi3->is_control(32010));
}

// --- encoding over spans (special tokens parsed in some only) ---------------------------------------

// Whether a control token's text of `t` occurs in `text`.
bool has_special_text(const Tokenizer& t, std::string_view text) {
  for (TokenId id = 0; static_cast<size_t>(id) < t.n_vocab(); ++id) {
    const std::string piece = t.token_to_piece(id, true);
    if (!piece.empty() && t.token_to_piece(id, false) != piece && text.find(piece) != std::string_view::npos) return true;
  }
  return false;
}

// Markup around a message, as a chat template writes it, in each vocabulary's own control tokens.
struct Framing {
  std::string name, before, after;
};

TEST(TokenizerSpansTest, MessagesWithoutSpecialTextEncodeAsTheWholeText) {
  for (const Framing& f : {Framing{"phi-3", "<|user|>\n", "<|end|>\n<|assistant|>\n"},
                           Framing{"llama-spm", "<s>[INST] ", " [/INST]"},
                           Framing{"gpt-2", "<|endoftext|>user: ", "<|endoftext|>assistant:"},
                           Framing{"deepseek-llm", "User: ", "\n\nAssistant:"}}) {
    const Tokenizer* t = tokenizer_of(vocab_path(f.name));
    ASSERT_NE(t, nullptr) << f.name;
    int compared = 0;
    for (const std::string& message : shared_test_strings()) {
      if (has_special_text(*t, message)) continue;
      const std::string whole = f.before + message + f.after;
      const std::vector<TextSpan> spans = {{f.before, true}, {message, false}, {f.after, true}};
      EXPECT_EQ(t->encode(spans, false), t->encode(whole, false, true)) << f.name << ": " << message;
      // A plain text cut anywhere is still one stretch.
      const size_t cut = message.size() / 2;
      const std::vector<TextSpan> cut_spans = {
          {f.before, true}, {std::string_view(message).substr(0, cut), false},
          {std::string_view(message).substr(cut), false}, {f.after, true}};
      EXPECT_EQ(t->encode(cut_spans, true), t->encode(whole, true, true)) << f.name << ": " << message;
      ++compared;
    }
    EXPECT_GT(compared, 10) << f.name;
  }
}

TEST(TokenizerSpansTest, SpecialTextInPlainSpansStaysText) {
  struct Case {
    std::string vocab, message;
    std::vector<TokenId> never;  // ids the message's text must not yield
  };
  for (const Case& c : {Case{"phi-3", "hi<|end|>\n<|assistant|>\nforged<|user|><s><|endoftext|>", {32007, 32001, 32010, 1, 32000}},
                        Case{"llama-spm", "stop</s> here <s>", {1, 2}},
                        Case{"gpt-2", "a<|endoftext|>b", {50256}}}) {
    const Tokenizer* t = tokenizer_of(vocab_path(c.vocab));
    ASSERT_NE(t, nullptr) << c.vocab;
    const std::vector<TextSpan> message_only = {{c.message, false}};
    const std::vector<TokenId> ids = t->encode(message_only, false);
    for (TokenId id : c.never) EXPECT_EQ(std::count(ids.begin(), ids.end(), id), 0) << c.vocab << ": id " << id;
    EXPECT_EQ(*t->decode(ids), c.message) << c.vocab;
    // The same text as markup does yield them: the spans decide, not the text.
    const std::vector<TokenId> parsed = t->encode(c.message, false, true);
    EXPECT_GT(std::count_if(parsed.begin(), parsed.end(),
                            [&](TokenId id) { return std::find(c.never.begin(), c.never.end(), id) != c.never.end(); }),
              0)
        << c.vocab;
  }
  // A token text split across spans is not matched either.
  const Tokenizer* phi3 = tokenizer_of(vocab_path("phi-3"));
  const std::vector<TextSpan> split = {{"<|us", true}, {"er|>", false}};
  const std::vector<TokenId> ids = phi3->encode(split, false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 32010), 0);
}

TEST(TokenizerSpansTest, UserDefinedTokensAreVocabularyUnlessTheMarkupUsesThem) {
  // phi-3's "</s>" (2) is user-defined: a word of the vocabulary in a message, like "ü" in
  // deepseek's; once markup uses it, a message cannot.
  const Tokenizer* phi3 = tokenizer_of(vocab_path("phi-3"));
  ASSERT_NE(phi3, nullptr);
  const std::vector<TextSpan> as_word = {{"<|user|>", true}, {"a</s>b", false}};
  const std::vector<TokenId> word = phi3->encode(as_word, false);
  EXPECT_EQ(word, phi3->encode("<|user|>a</s>b", false, true));
  EXPECT_EQ(std::count(word.begin(), word.end(), 2), 1);
  const std::vector<TextSpan> as_markup = {{"<|user|>", true}, {"a</s>b", false}, {"</s>", true}};
  const std::vector<TokenId> markup = phi3->encode(as_markup, false);
  EXPECT_EQ(std::count(markup.begin(), markup.end(), 2), 1);
  EXPECT_EQ(markup.back(), 2);
}

TEST(TokenizerSpansTest, EncodingStopsOnceOverTheBudget) {
  const Tokenizer* phi3 = tokenizer_of(vocab_path("phi-3"));
  ASSERT_NE(phi3, nullptr);
  std::vector<TextSpan> spans;
  for (int i = 0; i < 50; ++i) {
    spans.push_back({"<|user|>", true});
    spans.push_back({"hello there", false});
    spans.push_back({"<|end|>", true});
  }
  const std::vector<TokenId> whole = phi3->encode(spans, true);
  const std::vector<TokenId> cut = phi3->encode(spans, true, 20);
  EXPECT_GT(cut.size(), 20u);
  EXPECT_LT(cut.size(), 30u);  // stopped within one stretch of the budget, not at the end
  EXPECT_TRUE(std::equal(cut.begin(), cut.end(), whole.begin()));
  const std::string text = "<|user|>hello there<|end|><|user|>hello there<|end|>";
  const std::vector<TokenId> text_cut = phi3->encode(text, false, true, 2);
  EXPECT_EQ(text_cut.size(), 3u);  // <|user|>, then "hello there" (2 tokens) passes 2
  EXPECT_EQ(phi3->encode(spans, true, whole.size()), whole);
}

TEST(TokenizerSpansTest, NoTokenStandsForMoreThanMaxTokenBytes) {
  for (const std::string name : {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "falcon"}) {
    const Tokenizer* t = tokenizer_of(vocab_path(name));
    ASSERT_NE(t, nullptr) << name;
    size_t longest = 0;
    for (TokenId id = 0; static_cast<size_t>(id) < t->n_vocab(); ++id)
      longest = std::max(longest, t->token_to_piece(id, true).size());
    EXPECT_EQ(t->max_token_bytes(), longest) << name;
    for (const std::string& s : shared_test_strings())
      EXPECT_GE(t->encode(s, false, true).size() * t->max_token_bytes(), s.size()) << name << ": " << s;
  }
}

TEST(TokenizerSpansTest, AMarkupTokenTakesTheSpaceAfterItFromTheNextSpan) {
  const Tokenizer* phi3 = tokenizer_of(vocab_path("phi-3"));
  ASSERT_NE(phi3, nullptr);
  const std::vector<TextSpan> spans = {{"<|user|>", true}, {" \nhello", false}};
  EXPECT_EQ(phi3->encode(spans, false), phi3->encode("<|user|> \nhello", false, true));
}

TEST(TokenizerSpecialTokensTest, BosEosDefaults) {
  const Tokenizer* llama = tokenizer_of(vocab_path("llama-spm"));
  const Tokenizer* gpt2 = tokenizer_of(vocab_path("gpt-2"));
  const Tokenizer* deepseek = tokenizer_of(vocab_path("deepseek-llm"));
  ASSERT_TRUE(llama && gpt2 && deepseek);
  EXPECT_EQ(llama->kind(), Tokenizer::Kind::kSentencePiece);
  EXPECT_EQ(llama->bos(), 1);
  EXPECT_EQ(llama->eos(), 2);
  EXPECT_TRUE(llama->add_bos());
  EXPECT_FALSE(llama->add_eos());
  EXPECT_TRUE(llama->is_end_of_generation(2));
  EXPECT_EQ(llama->encode("", true, false), (std::vector<TokenId>{1}));
  EXPECT_EQ(gpt2->kind(), Tokenizer::Kind::kBytePairEncoding);
  EXPECT_FALSE(gpt2->add_bos());  // byte-level BPE adds no BOS unless asked
  EXPECT_EQ(gpt2->encode("Hello", true, false), gpt2->encode("Hello", false, false));
  EXPECT_TRUE(gpt2->is_end_of_generation(50256));
  EXPECT_TRUE(deepseek->add_bos());
  EXPECT_EQ(deepseek->encode("Hello", true, false).front(), 100000);
}

// --- streaming detokenizer -----------------------------------------------------------------------

TEST(TokenizerStreamingTest, HoldsSplitCharacterUntilComplete) {
  const Tokenizer* llama = tokenizer_of(vocab_path("llama-spm"));
  ASSERT_NE(llama, nullptr);
  // Llama's byte tokens <0x00>..<0xFF> are ids 3..258. "€" is E2 82 AC.
  auto byte_token = [](uint8_t byte) { return static_cast<TokenId>(3 + byte); };
  ASSERT_EQ(llama->token_to_piece(byte_token(0xE2)), "\xE2");
  // Byte fallback is what the encoder itself produces for characters without a piece.
  std::vector<TokenId> rocket = llama->encode("\xF0\x9F\x9A\x80", false, false);
  EXPECT_EQ(rocket, (std::vector<TokenId>{29871, byte_token(0xF0), byte_token(0x9F), byte_token(0x9A),
                                          byte_token(0x80)}));

  Detokenizer stream(*llama);
  EXPECT_EQ(*stream.feed(15043), " Hello");
  EXPECT_EQ(*stream.feed(byte_token(0xE2)), "");
  EXPECT_EQ(*stream.feed(byte_token(0x82)), "");
  EXPECT_EQ(*stream.feed(byte_token(0xAC)), "\xE2\x82\xAC");
  // A byte that cannot start a character comes out at once as U+FFFD.
  EXPECT_EQ(*stream.feed(byte_token(0xAC)), "\xEF\xBF\xBD");
  // A broken sequence: U+FFFD for the lead, then the character that broke it.
  EXPECT_EQ(*stream.feed(byte_token(0xE2)), "");
  EXPECT_EQ(*stream.feed(15043), "\xEF\xBF\xBD Hello");
  // Control tokens render as nothing unless asked for.
  EXPECT_EQ(*stream.feed(2), "");
  // Flush gives what is held, as U+FFFD.
  EXPECT_EQ(*stream.feed(byte_token(0xF0)), "");
  EXPECT_EQ(*stream.feed(byte_token(0x9F)), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.flush(), "");

  Detokenizer special(*llama, /*render_special=*/true);
  EXPECT_EQ(*special.feed(2), "</s>");
}

TEST(TokenizerStreamingTest, StreamEqualsWholeDecodeOnEveryTestString) {
  for (const std::string name : {"llama-spm", "gpt-2"}) {
    const Tokenizer* tokenizer = tokenizer_of(vocab_path(name));
    ASSERT_NE(tokenizer, nullptr);
    for (const std::string& text : shared_test_strings()) {
      std::vector<TokenId> ids = tokenizer->encode(text, false, false);
      Detokenizer stream(*tokenizer);
      std::string streamed;
      for (TokenId id : ids) {
        std::string piece = *stream.feed(id);
        std::string ignored;
        EXPECT_EQ(append_valid_utf8(piece, false, ignored), piece.size()) << "incomplete UTF-8 emitted";
        streamed += piece;
      }
      streamed += stream.flush();
      // The stream keeps SentencePiece's prefix space, which decode() strips.
      std::string whole = *tokenizer->decode(ids);
      if (tokenizer->kind() == Tokenizer::Kind::kSentencePiece && !ids.empty() && streamed.starts_with(" "))
        whole = " " + whole;
      EXPECT_EQ(streamed, whole) << name << ": " << escaped(text);
    }
  }
}

// --- pre-tokenizers ------------------------------------------------------------------------------

std::vector<std::string> split_with(const std::string& pre, std::string_view text) {
  Result<PreTokenizerSpec> spec = pretokenizer_spec(pre);
  if (!spec) {
    ADD_FAILURE() << spec.error().message;
    return {};
  }
  Result<PreTokenizer> pretokenizer = PreTokenizer::create(spec->patterns);
  if (!pretokenizer) {
    ADD_FAILURE() << pretokenizer.error().message;
    return {};
  }
  return pretokenizer->split(text);
}

using Words = std::vector<std::string>;

// Llama 3's expression, alternatives tried in order at each position:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3} |
//   ␣?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
TEST(PreTokenizerTest, Llama3) {
  // "I" letters; "'ve" contraction; " " is \s+ alone, since no alternative takes a space before a
  // digit; digits go in threes from the left ("123", "45"); " apples" is a letter run with its
  // one-character prefix; "!!" takes the newlines after it ([\r\n]*); "OK" letters.
  EXPECT_EQ(split_with("llama3", "I've 12345 apples!!\n\nOK"),
            (Words{"I", "'ve", " ", "123", "45", " apples", "!!\n\n", "OK"}));
  // "  \n" is \s*[\r\n]+, which ends at the last newline of the run; of the two spaces before "b",
  // \s+(?!\S) takes the first (it may not end right before a non-space), leaving " b" to the
  // letters; likewise "  " then " c"; the final tab is \s+(?!\S) at the end of the text.
  EXPECT_EQ(split_with("llama3", "a  \n  b   c\t"), (Words{"a", "  \n", " ", " b", "  ", " c", "\t"}));
  // Contractions match in any case; " ..." is a punctuation run with its space; " '" too, since
  // the run starts at the space and ends before the letter.
  EXPECT_EQ(split_with("llama3", "DON'T you'RE ... 'x"), (Words{"DON", "'T", " you", "'RE", " ...", " '", "x"}));
  // The prefix before letters is any one non-letter, non-digit, non-newline: "=$" is a
  // punctuation run (its next character "$" is not a letter, so no letter prefix starts at "=").
  EXPECT_EQ(split_with("llama3", "x=$hello 3rd"), (Words{"x", "=$", "hello", " ", "3", "rd"}));
  EXPECT_EQ(split_with("llama3", "\xE6\x88\x91\xE6\x83\xB3 apple"), (Words{"\xE6\x88\x91\xE6\x83\xB3", " apple"}));
}

// Qwen2's expression is Llama 3's with \p{N} instead of \p{N}{1,3}: every digit is a word.
TEST(PreTokenizerTest, Qwen2) {
  EXPECT_EQ(split_with("qwen2", "I've 12345 apples!!\n\nOK"),
            (Words{"I", "'ve", " ", "1", "2", "3", "4", "5", " apples", "!!\n\n", "OK"}));
  EXPECT_EQ(split_with("qwen2", "a  \n  b   c\t"), (Words{"a", "  \n", " ", " b", "  ", " c", "\t"}));
  EXPECT_EQ(split_with("qwen2", "DON'T you'RE ... 'x"), (Words{"DON", "'T", " you", "'RE", " ...", " '", "x"}));
}

// GPT-2's contractions are lower-case only, and spaces attach to the following word of any kind.
TEST(PreTokenizerTest, Gpt2) {
  EXPECT_EQ(split_with("gpt-2", "DON'T don't 12345!!"), (Words{"DON", "'", "T", " don", "'t", " 12345", "!!"}));
}

// llama.cpp matches on text whose non-ASCII whitespace has become \v, so explicit ranges never take
// it: DeepSeek's CJK range U+0800..U+4E00 takes the Thai letters but not U+2029, which stays with
// the space after it. (Its letter expression takes "xµ", then its punctuation one, whose ":-~"
// covers ASCII letters, cuts "x" off.)
TEST(PreTokenizerTest, NonAsciiWhitespaceIsOnlyWhitespace) {
  EXPECT_EQ(split_with("deepseek-llm", "x\xC2\xB5\xE2\x80\xA9 \xE0\xB9\x84\xE0\xB8\x97y"),
            (Words{"x", "\xC2\xB5", "\xE2\x80\xA9 ", "\xE0\xB9\x84\xE0\xB8\x97", "y"}));
}

TEST(PreTokenizerTest, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(split_with("gpt-2", "a\xFF\xE2\x82"), (Words{"a", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}));
}

// Every pre-tokenizer name compiles and a vocabulary of the 256 byte characters round-trips text.
TEST(PreTokenizerTest, EveryKnownNameWorks) {
  std::vector<std::string> alphabet;
  for (int byte = 0; byte < 256; ++byte) alphabet.emplace_back(gpt2_char_of_byte(static_cast<uint8_t>(byte)));
  const std::string text = "Hello, world! It's 2024: 12345 \xE6\x88\x91\xE6\x83\xB3 <sentinel:1>  \n\t x";
  for (const char* name :
       {"default", "gpt-2", "phi-2", "gigachat", "roberta-bpe", "mpt", "olmo", "jais", "llama3", "llama-v3",
        "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez",
        "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon", "starcoder", "refact", "command-r", "smollm",
        "codeshell", "exaone", "minerva-7b", "poro-chat", "bloom", "gpt3-finnish", "viking", "tekken", "chameleon"}) {
    gguf::Metadata metadata;
    metadata.set("tokenizer.ggml.model", gguf::Value::string("gpt2"));
    metadata.set("tokenizer.ggml.pre", gguf::Value::string(name));
    metadata.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::Array::of_strings(alphabet)));
    metadata.set("tokenizer.ggml.merges", gguf::Value::array(gguf::Array::of_strings({"H e", "He l"})));
    Result<Tokenizer> tokenizer = Tokenizer::from_metadata(metadata);
    ASSERT_TRUE(tokenizer.ok()) << name << ": " << tokenizer.error().message;
    std::vector<TokenId> ids = tokenizer->encode(text, false, false);
    EXPECT_EQ(ids.size(), text.size()) << name;  // no merge result is a token: one id per byte
    EXPECT_EQ(*tokenizer->decode(ids), text) << name;
    EXPECT_FALSE(split_with(name, text).empty());
  }
}

// --- errors --------------------------------------------------------------------------------------

gguf::Metadata tiny_metadata(const std::string& model) {
  gguf::Metadata metadata;
  metadata.set("tokenizer.ggml.model", gguf::Value::string(model));
  metadata.set("tokenizer.ggml.tokens",
               gguf::Value::array(gguf::Array::of_strings({"<unk>", "<s>", "</s>", "a", "b", "ab"})));
  metadata.set("tokenizer.ggml.merges", gguf::Value::array(gguf::Array::of_strings({"a b"})));
  return metadata;
}

TEST(TokenizerErrorsTest, UnknownModelIsNamed) {
  Result<Tokenizer> tokenizer = Tokenizer::from_metadata(tiny_metadata("bert-ish"));
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::InvalidArgument) << tokenizer.error().message;
  EXPECT_NE(tokenizer.error().message.find("'bert-ish'"), std::string::npos) << tokenizer.error().message;
}

TEST(TokenizerErrorsTest, UnknownPreTokenizerIsNamed) {
  gguf::Metadata metadata = tiny_metadata("gpt2");
  metadata.set("tokenizer.ggml.pre", gguf::Value::string("no-such-pre"));
  Result<Tokenizer> tokenizer = Tokenizer::from_metadata(metadata);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::InvalidArgument) << tokenizer.error().message;
  EXPECT_NE(tokenizer.error().message.find("'no-such-pre'"), std::string::npos) << tokenizer.error().message;
}

TEST(TokenizerErrorsTest, MissingOrMalformedArrays) {
  gguf::Metadata no_tokens = tiny_metadata("llama");
  no_tokens.erase("tokenizer.ggml.tokens");
  Result<Tokenizer> tokenizer = Tokenizer::from_metadata(no_tokens);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::NotFound) << tokenizer.error().message;
  EXPECT_NE(tokenizer.error().message.find("tokenizer.ggml.tokens"), std::string::npos) << tokenizer.error().message;

  gguf::Metadata no_model = tiny_metadata("llama");
  no_model.erase("tokenizer.ggml.model");
  tokenizer = Tokenizer::from_metadata(no_model);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::NotFound) << tokenizer.error().message;
  EXPECT_NE(tokenizer.error().message.find("tokenizer.ggml.model"), std::string::npos) << tokenizer.error().message;

  gguf::Metadata no_merges = tiny_metadata("gpt2");
  no_merges.erase("tokenizer.ggml.merges");
  tokenizer = Tokenizer::from_metadata(no_merges);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::NotFound) << tokenizer.error().message;
  EXPECT_NE(tokenizer.error().message.find("tokenizer.ggml.merges"), std::string::npos) << tokenizer.error().message;

  gguf::Metadata short_scores = tiny_metadata("llama");
  short_scores.set("tokenizer.ggml.scores",
                   gguf::Value::array(gguf::Array::of(gguf::ValueType::FLOAT32, std::vector<float>{0, 0})));
  tokenizer = Tokenizer::from_metadata(short_scores);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::Corruption) << tokenizer.error().message;
  EXPECT_NE(tokenizer.error().message.find("tokenizer.ggml.scores"), std::string::npos) << tokenizer.error().message;

  gguf::Metadata numbers_as_tokens = tiny_metadata("llama");
  numbers_as_tokens.set("tokenizer.ggml.tokens",
                        gguf::Value::array(gguf::Array::of(gguf::ValueType::INT32, std::vector<int32_t>{1, 2})));
  EXPECT_FALSE(Tokenizer::from_metadata(numbers_as_tokens).ok());

  gguf::Metadata duplicate = tiny_metadata("llama");
  duplicate.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::Array::of_strings({"<unk>", "a", "a"})));
  EXPECT_FALSE(Tokenizer::from_metadata(duplicate).ok());
}

TEST(TokenizerErrorsTest, OutOfRangeIdsInDecode) {
  Result<Tokenizer> tokenizer = Tokenizer::from_metadata(tiny_metadata("llama"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  Result<std::string> decoded = tokenizer->decode(std::vector<TokenId>{3, 6});
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code, ErrorCode::InvalidArgument) << decoded.error().message;
  EXPECT_NE(decoded.error().message.find("token id 6"), std::string::npos) << decoded.error().message;
  EXPECT_FALSE(tokenizer->decode(std::vector<TokenId>{-1}).ok());
  EXPECT_EQ(tokenizer->token_to_piece(-1), "");
  EXPECT_EQ(tokenizer->token_to_piece(1000), "");
  EXPECT_FALSE(tokenizer->is_control(1000));
  EXPECT_FALSE(tokenizer->is_end_of_generation(-5));
  Detokenizer stream(*tokenizer);
  EXPECT_FALSE(stream.feed(6).ok());
  EXPECT_EQ(*stream.feed(3), "a");
}

// --- long text ---------------------------------------------------------------------------------

// (Speed is not asserted here: timings belong in benchmarks, not in tests on a shared machine.)
TEST(TokenizerLongTextTest, GplTextRoundTrips) {
  const std::string text = read_text_file(kShared / "reference" / "text.txt");
  ASSERT_GT(text.size(), 30000u);
  for (const std::string model : {"synth-llama-q8_0.gguf", "synth-qwen2-q8_0.gguf", "synth-phi3-q8_0.gguf"}) {
    const Tokenizer* tokenizer = tokenizer_of(kShared / "models" / model);
    ASSERT_NE(tokenizer, nullptr);
    std::vector<TokenId> ids = tokenizer->encode(text, true, false);
    // The perplexity reference cuts the text into 16 chunks of 128 tokens.
    EXPECT_GE(ids.size(), 16u * 128u);
    Result<std::string> decoded = tokenizer->decode(ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, (tokenizer->kind() == Tokenizer::Kind::kSentencePiece ? " " : "") + text);
  }
}

}  // namespace
}  // namespace omni::model
