#include "gateway/openai_request.h"
#include "gateway/openai_response.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace omni::gateway {
namespace {

// The error's status and param, or a failure naming what parsed.
template <class T>
void expect_error(const ApiResult<T>& r, const std::string& param, const std::string& message_part = "") {
  ASSERT_FALSE(r.ok()) << "accepted, expected an error on '" << param << "'";
  EXPECT_EQ(r.error().status, 400);
  EXPECT_EQ(r.error().type, "invalid_request_error");
  if (param.empty()) {
    EXPECT_FALSE(r.error().param.has_value());
  } else {
    EXPECT_EQ(r.error().param.value_or("<none>"), param) << r.error().message;
  }
  if (!message_part.empty()) {
    EXPECT_NE(r.error().message.find(message_part), std::string::npos) << r.error().message;
  }
}

TEST(ChatRequest, ParsesAFullRequest) {
  auto r = parse_chat_request(R"({
    "model": "m", "messages": [{"role": "system", "content": "be brief"},
                               {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}],
    "max_tokens": 12, "temperature": 0, "top_p": 0.5, "seed": 42, "stop": ["a", "b"], "stream": true,
    "stream_options": {"include_usage": true}, "frequency_penalty": 0.5, "top_k": 7, "user": "ignored"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->model, "m");
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "hi there");
  EXPECT_EQ(r->params.max_tokens.value_or(-1), 12);
  EXPECT_EQ(r->params.sampling.temperature, 0.0f);
  EXPECT_EQ(r->params.sampling.top_p, 0.5f);
  EXPECT_EQ(r->params.sampling.top_k, 7);
  EXPECT_EQ(r->params.sampling.frequency_penalty, 0.5f);
  EXPECT_TRUE(r->params.seed_given);
  EXPECT_EQ(r->params.sampling.seed, 42u);
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r->params.stream);
  EXPECT_TRUE(r->params.include_usage);
}

TEST(ChatRequest, DefaultsAreOpenAIs) {
  auto r = parse_chat_request(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->params.max_tokens.has_value());
  EXPECT_EQ(r->params.sampling.temperature, 1.0f);
  EXPECT_EQ(r->params.sampling.top_p, 1.0f);
  EXPECT_EQ(r->params.sampling.top_k, 0);
  EXPECT_EQ(r->params.sampling.min_p, 0.0f);
  EXPECT_FALSE(r->params.seed_given);
  EXPECT_FALSE(r->params.stream);
  EXPECT_TRUE(r->params.stop.empty());
}

TEST(ChatRequest, MalformedJsonIsA400) {
  expect_error(parse_chat_request(""), "", "empty");
  expect_error(parse_chat_request("{"), "", "not valid JSON");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [}])"), "", "not valid JSON");
  expect_error(parse_chat_request("\xff\xfe"), "", "not valid JSON");
  expect_error(parse_chat_request("{\"model\": \"m\xc3\"}"), "", "not valid JSON");  // invalid UTF-8
  expect_error(parse_chat_request("[1, 2]"), "", "must be a JSON object");
  expect_error(parse_chat_request("42"), "", "must be a JSON object");
  expect_error(parse_chat_request(R"({"a": 1} trailing)"), "", "not valid JSON");
}

TEST(ChatRequest, DeepNestingIsRefusedBeforeParsing) {
  // A megabyte of '[' would overflow a recursive parser's stack; it must be a plain 400.
  std::string deep(1 << 20, '[');
  expect_error(parse_chat_request(deep), "", "nests");
  std::string ok = R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "x": )" +
                   std::string(20, '[') + std::string(20, ']') + "}";
  EXPECT_TRUE(parse_chat_request(ok).ok());
  // Brackets inside strings do not count.
  std::string in_string = R"({"model": "m", "messages": [{"role": "user", "content": ")" + std::string(100, '[') +
                          R"(\"["}]})";
  EXPECT_TRUE(parse_chat_request(in_string).ok()) << parse_chat_request(in_string).error().message;
}

TEST(ChatRequest, WrongTypesNameTheField) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "x"}])";
  expect_error(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})"), "model", "required");
  expect_error(parse_chat_request(R"({"model": 3, )" + msgs + "}"), "model", "must be a string");
  expect_error(parse_chat_request(R"({"model": "m"})"), "messages", "required");
  expect_error(parse_chat_request(R"({"model": "m", "messages": "hi"})"), "messages", "an array");
  expect_error(parse_chat_request(R"({"model": "m", "messages": []})"), "messages", "at least one");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [3]})"), "messages[0]", "an object");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [{"content": "x"}]})"), "messages[0].role");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [{"role": "function", "content": "x"}]})"),
               "messages[0].role", "not supported");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [{"role": "user"}]})"), "messages[0].content");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [{"role": "user", "content": 5}]})"),
               "messages[0].content");
  expect_error(parse_chat_request(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
               "messages[0].content", "text");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "max_tokens": "5"})"), "max_tokens", "an integer");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "max_tokens": 2.5})"), "max_tokens", "an integer");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "max_tokens": 0})"), "max_tokens", "between");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "max_tokens": 1e300})"), "max_tokens");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "max_tokens": 99999999999999999999})"),
               "max_tokens");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "temperature": "hot"})"), "temperature", "a number");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "temperature": 2.5})"), "temperature", "between");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "top_p": -0.1})"), "top_p");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "seed": "x"})"), "seed");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "stream": "yes"})"), "stream", "a boolean");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "stop": 5})"), "stop");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "stop": ["a", 1]})"), "stop");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "stop": ["a","b","c","d","e"]})"), "stop", "at most");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "n": 9})"), "n", "between 1 and 8");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "n": 0})"), "n", "between 1 and 8");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "logprobs": 1})"), "logprobs");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "top_logprobs": 2})"), "top_logprobs");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "logprobs": true, "top_logprobs": 21})"),
               "top_logprobs");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "stream_options": {"include_usage": true}})"),
               "stream_options");
  expect_error(parse_chat_request(R"({"model": "m", )" + msgs + R"(, "stream": true, "stream_options": {"include_usage": 1}})"),
               "stream_options.include_usage");
}

// A number beyond a double's range makes nlohmann throw out_of_range, not parse_error: it must
// still be a 400 naming the field, like any other out-of-range value.
TEST(ChatRequest, OverflowingNumbersAreA400NamingTheField) {
  const std::string messages = R"("model": "m", "messages": [{"role": "user", "content": "hi"}])";
  for (const std::string field : {"max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed", "top_k",
                                  "frequency_penalty", "presence_penalty", "min_p", "repeat_penalty"}) {
    for (const std::string number : {"1e400", "-1e400", "1e308", "-1e308", "123456789012345678901234567890"}) {
      SCOPED_TRACE(field + ": " + number);
      expect_error(parse_chat_request("{" + messages + ", \"" + field + "\": " + number + "}"), field);
      expect_error(parse_completion_request(R"({"model": "m", "prompt": "hi", ")" + field + "\": " + number + "}"), field);
    }
  }
}

TEST(ChatRequest, WholeFloatsAreIntegersAndNullsAreAbsent) {
  auto r = parse_chat_request(
      R"({"model": "m", "messages": [{"role": "developer", "content": "s"}, {"role": "user", "content": "x"}],
          "max_tokens": 8.0, "temperature": null, "stop": null, "seed": -1})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->params.max_tokens.value_or(-1), 8);
  EXPECT_EQ(r->params.sampling.temperature, 1.0f);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->params.sampling.seed, ~uint64_t{0});
}

TEST(ChatRequest, LogitBiasMapsTokenIdsToBiasesWithinBounds) {
  const std::string head = R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logit_bias": )";
  auto r = parse_chat_request(head + R"({"15": -100, "7": 2.5, "0": 100}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto bias = r->params.logit_bias;
  std::sort(bias.begin(), bias.end());
  const std::vector<std::pair<int32_t, float>> expected = {{0, 100.0f}, {7, 2.5f}, {15, -100.0f}};
  EXPECT_EQ(bias, expected);
  auto text = parse_completion_request(R"({"model": "m", "prompt": "x", "logit_bias": {"3": 1}})");
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(text->params.logit_bias.size(), 1u);

  expect_error(parse_chat_request(head + R"([1, 2]})"), "logit_bias", "an object");
  expect_error(parse_chat_request(head + R"({"x": 1}})"), "logit_bias.x", "token ids");
  expect_error(parse_chat_request(head + R"({"-1": 1}})"), "logit_bias.-1", "token ids");
  expect_error(parse_chat_request(head + R"({" 1": 1}})"), "logit_bias. 1", "token ids");
  expect_error(parse_chat_request(head + R"({"": 1}})"), "logit_bias.", "token ids");
  expect_error(parse_chat_request(head + R"({"99999999999": 1}})"), "logit_bias.99999999999", "token ids");
  expect_error(parse_chat_request(head + R"({"1": 100.5}})"), "logit_bias.1", "between");
  expect_error(parse_chat_request(head + R"({"1": "5"}})"), "logit_bias.1", "a number");
  std::string many = "{";
  for (size_t i = 0; i <= kMaxLogitBias; ++i) many += (i ? ",\"" : "\"") + std::to_string(i) + "\": 1";
  expect_error(parse_chat_request(head + many + "}}"), "logit_bias", "at most");
}

TEST(CompletionRequest, ParsesPromptForms) {
  auto r = parse_completion_request(R"({"model": "m", "prompt": "Once upon", "max_tokens": 3, "stop": "\n"})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::vector<CompletionPrompt> once = {std::string("Once upon")};
  EXPECT_EQ(r->prompts, once);
  EXPECT_EQ(r->params.n, 1);
  EXPECT_EQ(r->params.stop, std::vector<std::string>{"\n"});
  auto one = parse_completion_request(R"({"model": "m", "prompt": ["only"]})");
  ASSERT_TRUE(one.ok());
  const std::vector<CompletionPrompt> only = {std::string("only")};
  EXPECT_EQ(one->prompts, only);
  auto batch = parse_completion_request(R"({"model": "m", "prompt": ["a", [1, 2], "c"], "n": 2})");
  ASSERT_TRUE(batch.ok()) << batch.error().message;
  const std::vector<CompletionPrompt> three = {std::string("a"), std::vector<int32_t>{1, 2}, std::string("c")};
  EXPECT_EQ(batch->prompts, three);
  EXPECT_EQ(batch->params.n, 2);
  auto tokens = parse_completion_request(R"({"model": "m", "prompt": [1, 2, 3]})");
  ASSERT_TRUE(tokens.ok()) << tokens.error().message;
  const std::vector<CompletionPrompt> ids = {std::vector<int32_t>{1, 2, 3}};
  EXPECT_EQ(tokens->prompts, ids);
  expect_error(parse_completion_request(R"({"model": "m"})"), "prompt", "required");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": 7})"), "prompt");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": []})"), "prompt", "empty");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": [1, "a"]})"), "prompt", "token ids");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": [1, -2]})"), "prompt", "token ids");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": [1.5]})"), "prompt", "token ids");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": [4294967296]})"), "prompt", "token ids");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": ["a", []]})"), "prompt[1]", "empty");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": ["a", [1, {}]]})"), "prompt[1]", "token ids");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": ["a", 3]})"), "prompt[1]");
  std::string seventeen = R"({"model": "m", "prompt": [)";
  for (int i = 0; i < 17; ++i) seventeen += (i ? ",\"x\"" : "\"x\"");
  expect_error(parse_completion_request(seventeen + "]}"), "prompt", "at most 16");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": ["a", "b", "c"], "n": 6})"), "n", "choices");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": "x", "echo": true})"), "echo");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": "x", "best_of": 3})"), "best_of");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": "x", "logprobs": 6})"), "logprobs");
  expect_error(parse_completion_request(R"({"model": "m", "prompt": "x", "logprobs": true})"), "logprobs");
}

TEST(EmbeddingRequest, ParsesInputFormsAndRefusesBadOnes) {
  auto one = parse_embedding_request(R"({"model": "m", "input": "hello"})");
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->model, "m");
  const std::vector<CompletionPrompt> hello = {std::string("hello")};
  EXPECT_EQ(one->inputs, hello);
  EXPECT_FALSE(one->base64);
  auto mixed = parse_embedding_request(R"({"model": "m", "input": ["a", [1, 2]], "encoding_format": "base64"})");
  ASSERT_TRUE(mixed.ok()) << mixed.error().message;
  const std::vector<CompletionPrompt> two = {std::string("a"), std::vector<int32_t>{1, 2}};
  EXPECT_EQ(mixed->inputs, two);
  EXPECT_TRUE(mixed->base64);
  auto ids = parse_embedding_request(R"({"model": "m", "input": [7, 8], "dimensions": 256})");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->dimensions, 256);
  expect_error(parse_embedding_request(R"({"model": "m"})"), "input", "required");
  expect_error(parse_embedding_request(R"({"input": "x"})"), "model");
  expect_error(parse_embedding_request(R"({"model": "m", "input": ""})"), "input", "empty");
  expect_error(parse_embedding_request(R"({"model": "m", "input": ["a", ""]})"), "input[1]", "empty");
  expect_error(parse_embedding_request(R"({"model": "m", "input": []})"), "input", "empty");
  expect_error(parse_embedding_request(R"({"model": "m", "input": {"a": 1}})"), "input");
  expect_error(parse_embedding_request(R"({"model": "m", "input": [1, -1]})"), "input", "token ids");
  expect_error(parse_embedding_request(R"({"model": "m", "input": "x", "encoding_format": "int8"})"),
               "encoding_format");
  expect_error(parse_embedding_request(R"({"model": "m", "input": "x", "dimensions": 0})"), "dimensions");
  std::string many = R"({"model": "m", "input": [)";
  for (size_t i = 0; i <= kMaxEmbeddingInputs; ++i) many += (i ? ",\"x\"" : "\"x\"");
  expect_error(parse_embedding_request(many + "]}"), "input", "at most 64");
}

// Expected strings: Python's base64.b64encode(struct.pack("<3f", 1.0, -2.5, 0.1)) and the like.
TEST(EmbeddingResponse, Base64IsLittleEndianFloat32AsOpenAIEncodesIt) {
  EXPECT_EQ(base64_of_floats({1.0f, -2.5f, 0.1f}), "AACAPwAAIMDNzMw9");
  EXPECT_EQ(base64_of_floats({1.0f}), "AACAPw==");
  EXPECT_EQ(base64_of_floats({1.0f, 3.0f}), "AACAPwAAQEA=");
  EXPECT_EQ(base64_of_floats({}), "");
  const auto r = embeddings_response("m", {{1.0f}, {1.0f, 3.0f}}, true, 7);
  EXPECT_EQ(r["data"][1]["embedding"], "AACAPwAAQEA=");
  EXPECT_EQ(r["data"][1]["index"], 1);
  EXPECT_EQ(r["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(embeddings_response("m", {{1.0f, 3.0f}}, false, 2)["data"][0]["embedding"], nlohmann::json({1.0, 3.0}));
}

TEST(CompletionRequest, HugeBodiesParseOrFailCleanly) {
  // 8 MiB of prompt text is valid (the server's body limit, not the parser, refuses it).
  std::string big = R"({"model": "m", "prompt": ")" + std::string(8 << 20, 'a') + R"("})";
  auto r = parse_completion_request(big);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->prompts.size(), 1u);
  EXPECT_EQ(std::get<std::string>(r->prompts[0]).size(), size_t{8} << 20);
  // Truncated in the middle of the string.
  expect_error(parse_completion_request(std::string_view(big).substr(0, big.size() / 2)), "", "not valid JSON");
}

TEST(ChatRequest, LogprobsAskForTheTokensAndAlternatives) {
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  auto none = parse_chat_request(R"({"model": "m", )" + msgs + "}");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->params.logprobs, -1);
  auto own = parse_chat_request(R"({"model": "m", )" + msgs + R"(, "logprobs": true})");
  ASSERT_TRUE(own);
  EXPECT_EQ(own->params.logprobs, 0);
  auto top = parse_chat_request(R"({"model": "m", )" + msgs + R"(, "logprobs": true, "top_logprobs": 3})");
  ASSERT_TRUE(top);
  EXPECT_EQ(top->params.logprobs, 3);
  auto off = parse_chat_request(R"({"model": "m", )" + msgs + R"(, "logprobs": false})");
  ASSERT_TRUE(off);
  EXPECT_EQ(off->params.logprobs, -1);
  auto legacy = parse_completion_request(R"({"model": "m", "prompt": "x", "logprobs": 2})");
  ASSERT_TRUE(legacy);
  EXPECT_EQ(legacy->params.logprobs, 2);
}

TEST(ApiErrorJson, HasOpenAIsShape) {
  auto e = bad_request("bad thing", "messages", "some_code").to_json();
  EXPECT_EQ(e["error"]["message"], "bad thing");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "messages");
  EXPECT_EQ(e["error"]["code"], "some_code");
  auto plain = server_error("x").to_json();
  EXPECT_TRUE(plain["error"]["param"].is_null());
  EXPECT_TRUE(plain["error"]["code"].is_null());
  EXPECT_EQ(rate_limited("slow down", 3).status, 429);
  EXPECT_EQ(overloaded("busy", 1).status, 503);
  EXPECT_EQ(payload_too_large(10).status, 413);
}

}  // namespace
}  // namespace omni::gateway
