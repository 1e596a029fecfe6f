// Tool calling and structured output requests: parsing tools, tool_choice, response_format and
// tool messages; finding calls in the families' output formats; the stream filter; the grammar of
// forced calls.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "gateway/openai_request.h"
#include "gateway/tool_calls.h"

namespace omni::gateway {
namespace {

using ojson = nlohmann::ordered_json;

const std::vector<ToolDefinition> kTools = {
    {"get_weather", ojson::parse(R"({"type":"object","properties":{"city":{"type":"string","maxLength":20}},
                                     "required":["city"],"additionalProperties":false})")},
    {"now", nullptr},
};

TEST(ToolCalls, FoundInEachFamilysFormat) {
  auto one = [](std::string_view text) {
    ParsedAnswer a = parse_tool_calls(text, kTools);
    EXPECT_EQ(a.calls.size(), 1u) << text;
    return a;
  };
  ParsedAnswer hermes = one("Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>");
  EXPECT_EQ(hermes.content, "Let me look.");
  EXPECT_EQ(hermes.calls[0].name, "get_weather");
  EXPECT_EQ(ojson::parse(hermes.calls[0].arguments), ojson::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(hermes.calls[0].id.rfind("call_", 0), 0u);

  ParsedAnswer llama = one("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}");
  EXPECT_EQ(ojson::parse(llama.calls[0].arguments)["city"], "Rome");
  EXPECT_TRUE(llama.content.empty());

  ParsedAnswer mistral = parse_tool_calls(R"([TOOL_CALLS][{"name":"now","arguments":{}},{"name":"get_weather","arguments":{"city":"X"}}])", kTools);
  ASSERT_EQ(mistral.calls.size(), 2u);
  EXPECT_EQ(mistral.calls[0].name, "now");
  EXPECT_NE(mistral.calls[0].id, mistral.calls[1].id);

  ParsedAnswer generic = one(R"( {"name": "now", "arguments": "{}"} )");  // arguments as a JSON string
  EXPECT_EQ(generic.calls[0].arguments, "{}");
  ParsedAnswer openai_like = one(R"({"tool_calls":[{"function":{"name":"now","arguments":{}}}]})");
  EXPECT_EQ(openai_like.calls[0].name, "now");
}

TEST(ToolCalls, AnythingElseIsContent) {
  for (std::string_view text : {"Just text.", R"({"name": "rm_rf", "arguments": {}})", R"({"city": "Oslo"})",
                                "<tool_call>{broken</tool_call>", R"({"name": "now", "arguments": 5})", "[1, 2]"}) {
    ParsedAnswer a = parse_tool_calls(text, kTools);
    EXPECT_TRUE(a.calls.empty()) << text;
    EXPECT_EQ(a.content, text);
  }
  EXPECT_TRUE(parse_tool_calls(R"({"name": "now", "arguments": {}})", {}).calls.empty());  // no tools offered
}

TEST(ToolCalls, TheStreamHoldsOnlyWhatMayBeACall) {
  ToolCallStream s;
  std::string out = s.feed("Hello <tool");
  EXPECT_EQ(out, "Hello ");  // "<tool" may open a call
  out += s.feed("s are fun ");
  EXPECT_EQ(out, "Hello <tools are fun ");
  out += s.feed("<tool_call>{\"name\": \"now\", \"arguments\": {}}");
  EXPECT_EQ(out, "Hello <tools are fun ");
  ParsedAnswer end = s.finish(kTools);
  ASSERT_EQ(end.calls.size(), 1u);
  EXPECT_TRUE(end.content.empty());

  ToolCallStream json_first;
  EXPECT_EQ(json_first.feed("  {\"na"), "");
  EXPECT_EQ(json_first.feed("me\": 1}"), "");
  ParsedAnswer not_a_call = json_first.finish(kTools);
  EXPECT_TRUE(not_a_call.calls.empty());
  EXPECT_EQ(not_a_call.content, "  {\"name\": 1}");  // held, then given back whole
}

TEST(ToolCalls, ForcedCallGrammarAdmitsOnlyValidCalls) {
  auto g = tool_call_grammar(kTools, {ToolChoice::Kind::Required, ""}, ToolCallFormat::Generic);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_TRUE(g->matches(R"({"name": "get_weather", "arguments": {"city": "Oslo"}})"));
  EXPECT_TRUE(g->matches(R"({"name":"now","arguments":{"any":[1]}})"));
  EXPECT_FALSE(g->matches(R"({"name": "rm", "arguments": {}})"));
  EXPECT_FALSE(g->matches(R"({"name": "get_weather", "arguments": {}})"));  // city is required
  EXPECT_FALSE(g->matches(R"({"name": "get_weather", "arguments": {"city": 5}})"));

  auto named = tool_call_grammar(kTools, {ToolChoice::Kind::Function, "now"}, ToolCallFormat::Hermes);
  ASSERT_TRUE(named);
  EXPECT_TRUE(named->matches("<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>"));
  EXPECT_FALSE(named->matches("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a\"}}\n</tool_call>"));
  auto llama = tool_call_grammar(kTools, {ToolChoice::Kind::Function, "now"}, ToolCallFormat::Llama3);
  ASSERT_TRUE(llama);
  EXPECT_TRUE(llama->matches(R"({"name": "now", "parameters": {}})"));

  // The parser reads back what the grammar generates, in every format.
  for (auto format : {ToolCallFormat::Hermes, ToolCallFormat::Llama3, ToolCallFormat::Mistral, ToolCallFormat::Generic}) {
    const std::string key = format == ToolCallFormat::Llama3 ? "parameters" : "arguments";
    std::string call = "{\"name\": \"get_weather\", \"" + key + "\": {\"city\": \"Oslo\"}}";
    if (format == ToolCallFormat::Hermes) call = "<tool_call>\n" + call + "\n</tool_call>";
    if (format == ToolCallFormat::Mistral) call = "[" + call + "]";
    auto fg = tool_call_grammar(kTools, {ToolChoice::Kind::Required, ""}, format);
    ASSERT_TRUE(fg);
    EXPECT_TRUE(fg->matches(call)) << call;
    EXPECT_EQ(parse_tool_calls(call, kTools).calls.size(), 1u) << call;
  }

  const std::vector<ToolDefinition> bad = {{"f", ojson::parse(R"({"type":"string","pattern":"a"})")}};
  auto refused = tool_call_grammar(bad, {ToolChoice::Kind::Required, ""}, ToolCallFormat::Generic);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("'pattern'"), std::string::npos);
  EXPECT_NE(refused.error().message.find("tool 'f'"), std::string::npos);
}

TEST(ToolRequests, ToolsChoiceAndFormatAreRead) {
  auto r = parse_chat_request(R"({"model":"m","messages":[{"role":"user","content":"hi"}],
      "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"z":{},"a":{}}}}}],
      "tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false,
      "response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object"}}}})");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->tools.size(), 1u);
  EXPECT_EQ(r->tools[0].name, "get_weather");
  EXPECT_EQ(r->tools[0].parameters["properties"].begin().key(), "z");  // the client's order is kept
  EXPECT_EQ(r->tool_choice.kind, ToolChoice::Kind::Function);
  EXPECT_FALSE(r->parallel_tool_calls);
  EXPECT_EQ(r->params.response_format.kind, ResponseFormat::Kind::JsonSchema);
  EXPECT_TRUE(r->params.response_format.strict);
  EXPECT_TRUE(r->conversation.is_null());  // no tool messages

  auto bad = [](const std::string& extra, const std::string& param) {
    auto e = parse_chat_request(R"({"model":"m","messages":[{"role":"user","content":"hi"}],)" + extra + "}");
    ASSERT_FALSE(e) << extra;
    ASSERT_TRUE(e.error().param) << extra;
    EXPECT_EQ(*e.error().param, param) << extra << ": " << e.error().message;
  };
  bad(R"("tools":{})", "tools");
  bad(R"("tools":[{"type":"function","function":{"name":"bad name"}}])", "tools[0].function.name");
  bad(R"("tools":[{"type":"function","function":{"name":"f","parameters":3}}])", "tools[0].function.parameters");
  bad(R"("tool_choice":"required")", "tool_choice");
  bad(R"("tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}})",
      "tool_choice");
  bad(R"("tool_choice":"always")", "tool_choice");
  bad(R"("response_format":{"type":"xml"})", "response_format.type");
  bad(R"("response_format":{"type":"json_schema","json_schema":{"name":"x"}})", "response_format.json_schema.schema");
}

TEST(ToolRequests, ToolMessagesReachTheTemplateAsTemplatesExpect) {
  auto r = parse_chat_request(R"({"model":"m","messages":[{"role":"user","content":"weather?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"days\":2}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"sunny"}]})");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->conversation.size(), 3u);
  const ojson& call = r->conversation[1]["tool_calls"][0];
  EXPECT_TRUE(r->conversation[1]["content"].is_null());
  EXPECT_EQ(call["id"], "call_1");
  EXPECT_EQ(call["function"]["arguments"]["city"], "Oslo");  // parsed into an object
  EXPECT_EQ(call["function"]["arguments"].begin().key(), "city");
  EXPECT_EQ(r->conversation[2]["role"], "tool");
  EXPECT_EQ(r->conversation[2]["tool_call_id"], "call_1");
  EXPECT_EQ(r->conversation[2]["content"], "sunny");

  auto broken = parse_chat_request(R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":
      {"name":"f","arguments":"{not json"}}]}]})");
  ASSERT_FALSE(broken);
  EXPECT_EQ(*broken.error().param, "messages[0].tool_calls[0].function.arguments");
}

}  // namespace
}  // namespace omni::gateway
