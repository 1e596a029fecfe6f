#include "gateway/ollama_api.h"

#include <gtest/gtest.h>

#include <regex>

namespace omni::gateway {
namespace {

using nlohmann::json;

TEST(OllamaApi, ChatTakesOllamasDefaultsAndStreamsUnlessTold) {
  auto r = parse_ollama_chat(R"({"model":"tiny:latest","messages":[{"role":"user","content":"hi"}]})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->model, "tiny");
  ASSERT_EQ(r->messages.size(), 1u);
  EXPECT_EQ(r->messages[0].role, "user");
  EXPECT_EQ(r->messages[0].content, "hi");
  EXPECT_TRUE(r->params.stream);
  EXPECT_FALSE(r->params.max_tokens);
  EXPECT_FALSE(r->params.seed_given);
  EXPECT_FLOAT_EQ(r->params.sampling.temperature, 0.8f);
  EXPECT_EQ(r->params.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r->params.sampling.top_p, 0.9f);
  EXPECT_FLOAT_EQ(r->params.sampling.min_p, 0.0f);
  EXPECT_FLOAT_EQ(r->params.sampling.repeat_penalty, 1.1f);
  EXPECT_EQ(r->params.sampling.repeat_last_n, 64);
}

TEST(OllamaApi, OptionsMapOntoTheSampler) {
  auto r = parse_ollama_chat(R"({"model":"m","stream":false,"messages":[{"role":"system","content":"s"},
      {"role":"user","content":"u"}],"options":{"temperature":0,"top_k":5,"top_p":0.5,"min_p":0.1,"seed":42,
      "num_predict":7,"stop":["x","y"],"repeat_penalty":1.3,"repeat_last_n":-1,"presence_penalty":0.5,
      "frequency_penalty":0.25,"num_ctx":4096,"num_thread":2}})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->params.stream);
  ASSERT_TRUE(r->params.max_tokens);
  EXPECT_EQ(*r->params.max_tokens, 7);
  EXPECT_TRUE(r->params.seed_given);
  EXPECT_EQ(r->params.sampling.seed, 42u);
  EXPECT_FLOAT_EQ(r->params.sampling.temperature, 0.0f);
  EXPECT_EQ(r->params.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(r->params.sampling.top_p, 0.5f);
  EXPECT_FLOAT_EQ(r->params.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r->params.sampling.repeat_penalty, 1.3f);
  EXPECT_EQ(r->params.sampling.repeat_last_n, -1);
  EXPECT_FLOAT_EQ(r->params.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r->params.sampling.frequency_penalty, 0.25f);
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"x", "y"}));
  // -1 and -2 (no limit, fill the context) leave the limit to the context.
  for (const char* n : {"-1", "-2"}) {
    auto unlimited = parse_ollama_chat(std::string(R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":{"num_predict":)") + n + "}}");
    ASSERT_TRUE(unlimited) << unlimited.error().message;
    EXPECT_FALSE(unlimited->params.max_tokens);
  }
}

TEST(OllamaApi, WhatCannotBeHonouredIsRefusedByName) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"format":"yaml"})", "format"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"tools":[{"type":"function"}]})", "tools[0]"},
      {R"({"model":"m","messages":[{"role":"user","content":"u","images":["aGk="]}]})", "messages[0].images"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":{"num_predict":0}})", "options.num_predict"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":{"num_predict":"7"}})", "options.num_predict"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":{"temperature":9}})", "options.temperature"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":{"top_k":"a"}})", "options.top_k"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":{"repeat_last_n":-5}})", "options.repeat_last_n"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"options":[]})", "options"},
      {R"({"model":"m","messages":[{"role":"user","content":"u"}],"stream":"yes"})", "stream"},
      {R"({"model":7,"messages":[{"role":"user","content":"u"}]})", "model"},
      {R"({"model":"m","messages":[{"role":"function","content":"u"}]})", "messages[0].role"},
      {R"({"model":"m"})", "messages"},
  };
  for (const Case& c : cases) {
    auto r = parse_ollama_chat(c.body);
    ASSERT_FALSE(r) << c.body;
    EXPECT_EQ(r.error().status, 400) << c.body;
    ASSERT_TRUE(r.error().param) << c.body;
    EXPECT_EQ(*r.error().param, c.param) << c.body << ": " << r.error().message;
  }
  EXPECT_FALSE(parse_ollama_chat("{"));
  EXPECT_FALSE(parse_ollama_chat("[]"));
  EXPECT_FALSE(parse_ollama_chat(std::string(100, '[') + std::string(100, ']')));
}

TEST(OllamaApi, GenerateIsAUserTurnUnlessRaw) {
  auto r = parse_ollama_generate(R"({"model":"m","prompt":"p","system":"s","options":{"num_predict":3}})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->prompt, "p");
  ASSERT_TRUE(r->system);
  EXPECT_EQ(*r->system, "s");
  EXPECT_FALSE(r->raw);
  EXPECT_EQ(*r->params.max_tokens, 3);
  auto raw = parse_ollama_generate(R"({"model":"m","prompt":"p","raw":true,"stream":false})");
  ASSERT_TRUE(raw) << raw.error().message;
  EXPECT_TRUE(raw->raw);
  EXPECT_FALSE(raw->params.stream);
  auto both = parse_ollama_generate(R"({"model":"m","prompt":"p","raw":true,"system":"s"})");
  ASSERT_FALSE(both);
  EXPECT_EQ(*both.error().param, "system");
  auto templated = parse_ollama_generate(R"({"model":"m","prompt":"p","template":"{{ .Prompt }}"})");
  ASSERT_FALSE(templated);
  EXPECT_EQ(*templated.error().param, "template");
  auto context = parse_ollama_generate(R"({"model":"m","prompt":"p","context":[1,2,3]})");
  ASSERT_FALSE(context);
  EXPECT_EQ(*context.error().param, "context");
}

TEST(OllamaApi, ShowTakesModelOrName) {
  auto by_model = parse_ollama_show(R"({"model":"m:latest"})");
  ASSERT_TRUE(by_model);
  EXPECT_EQ(*by_model, "m");
  auto by_name = parse_ollama_show(R"({"name":"n"})");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(*by_name, "n");
  EXPECT_FALSE(parse_ollama_show("{}"));
}

TEST(OllamaApi, AnswersHaveOllamasShape) {
  const json chunk = ollama_chunk(OllamaEndpoint::Chat, "m", "hel");
  EXPECT_EQ(chunk["model"], "m");
  EXPECT_EQ(chunk["message"]["role"], "assistant");
  EXPECT_EQ(chunk["message"]["content"], "hel");
  EXPECT_EQ(chunk["done"], false);
  EXPECT_TRUE(std::regex_match(chunk["created_at"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)")))
      << chunk["created_at"];
  const OllamaTimings t{std::chrono::nanoseconds(5000), std::chrono::nanoseconds(2000), 11, 3};
  const json done = ollama_done(OllamaEndpoint::Generate, "m", "all", "length", t);
  EXPECT_EQ(done["response"], "all");
  EXPECT_EQ(done["done"], true);
  EXPECT_EQ(done["done_reason"], "length");
  EXPECT_EQ(done["total_duration"], 5000);
  EXPECT_EQ(done["prompt_eval_duration"], 2000);
  EXPECT_EQ(done["eval_duration"], 3000);
  EXPECT_EQ(done["prompt_eval_count"], 11);
  EXPECT_EQ(done["eval_count"], 3);
  EXPECT_EQ(ollama_error(bad_request("nope"))["error"], "nope");
  const json tags = ollama_tags({CatalogEntry{"a", "bafy", 512}, CatalogEntry{"b", "", 256}});
  ASSERT_EQ(tags["models"].size(), 2u);
  EXPECT_EQ(tags["models"][0]["name"], "a");
  EXPECT_EQ(tags["models"][0]["digest"], "bafy");
  const json show = ollama_show(CatalogEntry{"a", "", 512}, ModelDescription{"a", "llama", 4, 512, "{{ x }}"});
  EXPECT_EQ(show["template"], "{{ x }}");
  EXPECT_EQ(show["model_info"]["llama.context_length"], 512);
  EXPECT_EQ(show["details"]["family"], "llama");
}

}  // namespace
}  // namespace omni::gateway
