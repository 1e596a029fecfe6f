// The grammar engine and the JSON Schema compiler: texts they admit and refuse, schemas they
// refuse, and the property that matters: constrained generation with a real (random-weight) model
// yields, for 100 random schemas, texts that parse and validate against their schema, checked by
// an independent validator written here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "kernels/thread_pool.h"
#include "model/json_schema_grammar.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/token_constraint.h"
#include "model/tokenizer.h"

namespace omni::model {
namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

Grammar compile(const std::string& schema) {
  auto g = json_schema_grammar(ojson::parse(schema));
  EXPECT_TRUE(g) << g.error().message;
  return std::move(*g);
}

TEST(Grammar, RepeatBoundsAndLeftRecursionRefused) {
  GrammarBuilder b;
  const auto a = b.bytes(ByteSet::of('a'));
  const auto r = b.repeat(a, 2, 4);
  auto g = b.finish(r);
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->matches("a"));
  EXPECT_TRUE(g->matches("aa"));
  EXPECT_TRUE(g->matches("aaaa"));
  EXPECT_FALSE(g->matches("aaaaa"));

  GrammarBuilder left;
  const auto x = left.new_rule();
  left.add_alternative(x, {GrammarBuilder::ref(x), left.bytes(ByteSet::of('a'))});
  left.add_alternative(x, left.literal("b"));
  auto bad = left.finish(x);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("left-recursive"), std::string::npos);

  GrammarBuilder endless;  // x := "a" x: no finite sentence
  const auto y = endless.new_rule();
  endless.add_alternative(y, {endless.bytes(ByteSet::of('a')), GrammarBuilder::ref(y)});
  EXPECT_FALSE(endless.finish(y));
}

TEST(JsonSchemaGrammar, ObjectsFollowPropertiesAndRequired) {
  Grammar g = compile(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string","maxLength":3}},
                          "required":["a"],"additionalProperties":false})");
  EXPECT_TRUE(g.matches(R"({"a":1})"));
  EXPECT_TRUE(g.matches(R"({"a": -12, "b": "xyz"})"));
  EXPECT_TRUE(g.matches("{\n  \"a\": 0,\n  \"b\": \"\\u00e9\"\n}"));
  EXPECT_FALSE(g.matches(R"({"b":"x"})"));          // a is required
  EXPECT_FALSE(g.matches(R"({"a":1,"b":"abcd"})"));  // too long
  EXPECT_FALSE(g.matches(R"({"a":1.5})"));
  EXPECT_FALSE(g.matches(R"({"a":01})"));
  EXPECT_FALSE(g.matches(R"({"a":1,"c":2})"));
  EXPECT_FALSE(g.matches(R"({"a":1} )"));  // nothing after the value
  EXPECT_FALSE(g.matches("{\"a\":1,\"b\":\"\\ud800\"}"));  // a lone surrogate
  EXPECT_FALSE(g.matches("{\"a\":1,\"b\":\"\xc3\"}"));     // broken UTF-8
}

TEST(JsonSchemaGrammar, ArraysEnumsRefsAndAlternatives) {
  Grammar arr = compile(R"({"type":"array","items":{"enum":["x",2,null]},"minItems":1,"maxItems":2})");
  EXPECT_TRUE(arr.matches(R"(["x"])"));
  EXPECT_TRUE(arr.matches(R"([2, null])"));
  EXPECT_FALSE(arr.matches("[]"));
  EXPECT_FALSE(arr.matches(R"(["x",2,null])"));
  EXPECT_FALSE(arr.matches(R"(["y"])"));

  Grammar tree = compile(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"number"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"})");
  EXPECT_TRUE(tree.matches(R"({"v":1e5,"kids":[{"v":-0.5},{"v":2,"kids":[]}]})"));
  EXPECT_FALSE(tree.matches(R"({"v":1,"kids":[{}]})"));

  Grammar any = compile(R"({"anyOf":[{"type":"boolean"},{"type":"null"},{"const":{"k":[1]}}]})");
  EXPECT_TRUE(any.matches("true"));
  EXPECT_TRUE(any.matches("null"));
  EXPECT_TRUE(any.matches(R"({"k":[1]})"));
  EXPECT_FALSE(any.matches("1"));

  auto object = json_object_grammar();
  ASSERT_TRUE(object);
  EXPECT_TRUE(object->matches(R"({"a":[1,{"b":null}],"c":"d"})"));
  EXPECT_FALSE(object->matches("[1]"));
  EXPECT_FALSE(object->matches(R"({"a":})"));
}

TEST(JsonSchemaGrammar, RefusesWhatItCannotEnforce) {
  auto refused = [](const std::string& schema, const std::string& expect) {
    auto g = json_schema_grammar(ojson::parse(schema));
    ASSERT_FALSE(g) << schema;
    EXPECT_NE(g.error().message.find(expect), std::string::npos) << g.error().message;
  };
  refused(R"({"type":"string","pattern":"^a+$"})", "'pattern'");
  refused(R"({"type":"integer","minimum":3})", "'minimum'");
  refused(R"({"properties":{"a":{"not":{}}}})", "#/properties/a");
  refused(R"({"oneOf":[{"type":"integer"},{"type":"number"}]})", "oneOf");
  refused(R"({"$ref":"#/$defs/missing"})", "does not resolve");
  refused(R"({"$ref":"https://example.com/s.json"})", "$ref");
  refused(R"({"anyOf":[{"$ref":"#"},{"type":"null"}]})", "left-recursive");
  refused(R"({"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]})", "no finite");
  refused(R"({"type":"object","required":["x"]})", "'x'");
  refused(R"(false)", "admits no value");
  // Hostile sizes: deep nesting and huge grammars are refused, quickly.
  std::string deep = "true";
  for (int i = 0; i < 100; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  auto g = json_schema_grammar(ojson::parse(deep));
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, ErrorCode::ResourceExhausted);
  ojson wide = {{"type", "object"}, {"properties", ojson::object()}};
  for (int i = 0; i < 100; ++i) wide["properties"]["p" + std::to_string(i)] = {{"type", "string"}, {"maxLength", 90000}};
  g = json_schema_grammar(wide);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, ErrorCode::ResourceExhausted);
}

// ---- the property test ----

// A random schema of the supported subset. Strings and arrays get small bounds, so that a random
// model's output ends within the token budget (its strings would otherwise run on: a closing quote
// is one of few admitted tokens among 50k).
class SchemaGenerator {
 public:
  explicit SchemaGenerator(uint64_t seed) : rng_(seed) {}

  ojson root() {
    defs_ = ojson::object();
    ojson s = value(0);
    if (!defs_.empty()) s = {{"$defs", defs_}, {"allOf", ojson::array({s})}};
    return s;
  }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  ojson scalar_literal() {
    switch (pick(5)) {
      case 0: return "s" + std::to_string(pick(100));
      case 1: return pick(2000) - 1000;
      case 2: return pick(2) == 1;
      case 3: return nullptr;
      default: return 0.25 * pick(40);
    }
  }

  ojson value(int depth) {
    const int kind = pick(depth >= 3 ? 6 : 11);
    switch (kind) {
      case 0: {
        ojson s = {{"type", "string"}};
        const int lo = pick(3);
        s["maxLength"] = lo + pick(10);
        if (lo) s["minLength"] = lo;
        return s;
      }
      case 1: return {{"type", "integer"}};
      case 2: return {{"type", "number"}};
      case 3: return {{"type", pick(2) ? "boolean" : "null"}};
      case 4: {
        ojson e = ojson::array();
        for (int i = 0, n = 1 + pick(4); i < n; ++i) e.push_back(scalar_literal());
        return {{"enum", e}};
      }
      case 5: return {{"const", scalar_literal()}};
      case 6:
      case 7: {
        ojson props = ojson::object(), required = ojson::array();
        for (int i = 0, n = 1 + pick(4); i < n; ++i) {
          const std::string name = std::string(1, static_cast<char>('a' + pick(26))) + std::to_string(i);
          props[name] = value(depth + 1);
          if (pick(2)) required.push_back(name);
        }
        ojson s = {{"type", "object"}, {"properties", props}, {"required", required}};
        if (pick(2)) s["additionalProperties"] = false;
        return s;
      }
      case 8: {
        ojson s = {{"type", "array"}, {"items", value(depth + 1)}};
        const int lo = pick(3);
        if (lo) s["minItems"] = lo;
        s["maxItems"] = lo + pick(3);
        return s;
      }
      case 9: {
        const char* key = pick(2) ? "anyOf" : "oneOf";
        if (std::string(key) == "oneOf")  // branches of different types
          return {{key, ojson::array({{{"type", "integer"}}, {{"type", "string"}, {"maxLength", 5}}, {{"type", "null"}}})}};
        return {{key, ojson::array({value(depth + 1), value(depth + 1)})}};
      }
      default: {
        const std::string name = "d" + std::to_string(defs_.size());
        defs_[name] = value(depth + 1);
        return {{"$ref", "#/$defs/" + name}};
      }
    }
  }

  std::mt19937_64 rng_;
  ojson defs_;
};

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

// An independent validator of the subset the generator writes (JSON Schema semantics).
bool valid(const json& v, const ojson& s, const ojson& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) return valid(v, root.at(ojson::json_pointer(s["$ref"].get<std::string>().substr(1))), root);
  if (s.contains("allOf")) {
    for (const auto& b : s["allOf"]) if (!valid(v, b, root)) return false;
    return true;
  }
  if (s.contains("anyOf")) {
    for (const auto& b : s["anyOf"]) if (valid(v, b, root)) return true;
    return false;
  }
  if (s.contains("oneOf")) {
    int n = 0;
    for (const auto& b : s["oneOf"]) n += valid(v, b, root);
    return n == 1;
  }
  if (s.contains("const")) return v == json::parse(s["const"].dump());
  if (s.contains("enum")) {
    for (const auto& e : s["enum"]) if (v == json::parse(e.dump())) return true;
    return false;
  }
  const std::string type = s.value("type", "");
  if (type == "string") {
    if (!v.is_string()) return false;
    const size_t n = code_points(v.get<std::string>());
    return n >= s.value("minLength", size_t{0}) && n <= s.value("maxLength", SIZE_MAX);
  }
  if (type == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "array") {
    if (!v.is_array() || v.size() < s.value("minItems", size_t{0}) || v.size() > s.value("maxItems", SIZE_MAX)) return false;
    for (const auto& item : v) if (!valid(item, s["items"], root)) return false;
    return true;
  }
  if (type == "object") {
    if (!v.is_object()) return false;
    for (const auto& r : s["required"]) if (!v.contains(r.get<std::string>())) return false;
    for (const auto& [key, value] : v.items()) {
      if (s["properties"].contains(key)) {
        if (!valid(value, s["properties"][key], root)) return false;
      } else if (s.contains("additionalProperties") && s["additionalProperties"] == false) {
        return false;
      }
    }
    return true;
  }
  return false;
}

TEST(JsonSchemaGrammar, ValidatorRejectsWrongValues) {  // the validator itself can fail
  const ojson s = ojson::parse(R"({"type":"object","properties":{"a":{"type":"string","maxLength":2}},"required":["a"],
                                  "additionalProperties":false})");
  EXPECT_TRUE(valid(json::parse(R"({"a":"xy"})"), s, s));
  EXPECT_FALSE(valid(json::parse(R"({"a":"xyz"})"), s, s));
  EXPECT_FALSE(valid(json::parse(R"({})"), s, s));
  EXPECT_FALSE(valid(json::parse(R"({"a":"x","b":1})"), s, s));
}

// The mask (trie walk, learnt transitions, cache) equals testing every token on its own, state
// after state along a generated answer.
TEST(TokenConstraint, MaskEqualsTestingEachToken) {
  auto model = Model::load(std::string(OMNI_SHARED_DIR) + "/models/synth-qwen2-q8_0.gguf");
  if (!model) GTEST_SKIP() << "no shared model: " << model.error().message;
  auto tokenizer = Tokenizer::from_metadata((*model)->file().metadata());
  ASSERT_TRUE(tokenizer);
  auto vocabulary = std::make_shared<const TokenVocabulary>(*tokenizer);
  auto grammar = json_schema_grammar(ojson::parse(
      R"({"type":"object","properties":{"s":{"type":"string","maxLength":4},"n":{"type":"array","items":{"type":"number"}}},
          "required":["s","n"]})"));
  ASSERT_TRUE(grammar);
  auto constrained = std::make_shared<const ConstrainedGrammar>(std::move(*grammar), vocabulary);
  TokenConstraint constraint(constrained);
  std::mt19937_64 rng(5);
  std::vector<float> logits(vocabulary->size());
  size_t admitted_total = 0;
  for (int step = 0; step < 40 && !constraint.finished(); ++step) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    ASSERT_TRUE(constraint.apply(logits));
    std::vector<TokenId> admitted;
    for (size_t id = 0; id < logits.size(); ++id) {
      const bool in_mask = logits[id] == 0.0f;
      ASSERT_EQ(in_mask, constraint.admits(static_cast<TokenId>(id))) << "token " << id << " at step " << step;
      if (in_mask) admitted.push_back(static_cast<TokenId>(id));
    }
    admitted_total += admitted.size();
    ASSERT_TRUE(constraint.accept(admitted[rng() % admitted.size()]));
  }
  EXPECT_GT(admitted_total, 1000u);  // the states met were not all trivial
}

TEST(JsonSchemaGrammar, RandomSchemasConstrainedGenerationValidates) {
  auto model = Model::load(std::string(OMNI_SHARED_DIR) + "/models/synth-qwen2-q8_0.gguf");
  if (!model) GTEST_SKIP() << "no shared model: " << model.error().message;
  auto tokenizer = Tokenizer::from_metadata((*model)->file().metadata());
  ASSERT_TRUE(tokenizer);
  auto vocabulary = std::make_shared<const TokenVocabulary>(*tokenizer);
  kernels::ThreadPool pool(2);
  const std::vector<int32_t> prompt = tokenizer->encode("Answer in JSON:", false, false);
  SchemaGenerator gen(20261207);
  std::vector<float> logits, scratch;
  for (int i = 0; i < 100; ++i) {
    const ojson schema = gen.root();
    SCOPED_TRACE("schema " + std::to_string(i) + ": " + schema.dump());
    auto grammar = json_schema_grammar(schema);
    ASSERT_TRUE(grammar) << grammar.error().message;
    auto constrained = std::make_shared<const ConstrainedGrammar>(std::move(*grammar), vocabulary);
    TokenConstraint constraint(constrained);
    SamplingParams params;
    params.temperature = 1.0f;
    params.top_k = 0, params.top_p = 1.0f, params.min_p = 0.0f;
    params.seed = static_cast<uint64_t>(i);
    auto sampler = Sampler::create(params);
    ASSERT_TRUE(sampler);
    auto session = Session::create(**model, 0, (*model)->config().n_layer, 1024);
    ASSERT_TRUE(session);
    std::vector<int32_t> generated;
    std::vector<int32_t> step = prompt;
    bool ended = false;
    while (generated.size() < 900) {
      if (constraint.finished()) {  // nothing may follow: done without asking the model
        ended = true;
        break;
      }
      ASSERT_TRUE((*session)->forward(step, {}, Output::LastLogits, logits, pool));
      auto token = constraint.sample(*sampler, logits, scratch);
      ASSERT_TRUE(token);
      ASSERT_TRUE(constraint.accept(*token));
      if (tokenizer->is_end_of_generation(*token)) {
        ended = true;
        break;
      }
      generated.push_back(*token);
      step = {*token};
    }
    auto text = tokenizer->decode(generated);
    ASSERT_TRUE(text);
    ASSERT_TRUE(ended) << "no end within the budget: " << *text;
    json value;
    ASSERT_NO_THROW(value = json::parse(*text)) << *text;
    EXPECT_TRUE(valid(value, schema, schema)) << *text;
  }
}

}  // namespace
}  // namespace omni::model
