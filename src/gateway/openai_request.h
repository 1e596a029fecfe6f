// Parsing and validation of OpenAI API request bodies (POST /v1/chat/completions and
// /v1/completions) into what the scheduler runs.
//
// Every rule gives a 400 ApiError naming the field (param) and what is wrong with it: malformed
// JSON, nesting deeper than kMaxJsonDepth (checked before parsing, so a hostile body cannot exhaust
// the parser's stack), wrong types, values out of range, unsupported options. Unknown fields are
// ignored, as OpenAI's own clients send fields a server may not know. Extensions that llama.cpp's
// server also accepts: top_k, min_p, repeat_penalty.
//
// Sampling defaults are OpenAI's (temperature 1, top_p 1, no top-k or min-p), not `omni run`'s.
// The model name is returned, not checked: the server knows which models exist.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/api_error.h"
#include "model/chat_template.h"
#include "model/sampler.h"

namespace omni::gateway {

// A value or the ApiError that says why there is none (the API's analogue of omni::Result).
template <class T>
class ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}
  ApiResult(ApiError error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

constexpr int kMaxJsonDepth = 32;
constexpr size_t kMaxStopStrings = 4;    // as OpenAI
constexpr size_t kMaxStopLength = 256;
constexpr size_t kMaxMessages = 4096;
constexpr size_t kMaxLogitBias = 300;    // as OpenAI
constexpr int kMaxChoices = 8;           // n: choices per prompt
constexpr size_t kMaxPrompts = 16;       // a completion's batch of prompts
constexpr size_t kMaxChoicesPerRequest = 16;  // prompts x n
constexpr size_t kMaxEmbeddingInputs = 64;    // inputs of one /v1/embeddings request

constexpr size_t kMaxTools = 128;

// The shape the output must have (chat's response_format, Ollama's "format"), enforced by
// grammar-constrained sampling (model/json_schema_grammar.h).
struct ResponseFormat {
  enum class Kind { Text, JsonObject, JsonSchema };
  Kind kind = Kind::Text;
  nlohmann::ordered_json schema;  // JsonSchema: the schema, its keys in the client's order
  std::string name;               // json_schema.name
  bool strict = false;            // json_schema.strict (every schema is enforced: it changes nothing)
};

// A function the model may call ("tools": [{"type": "function", "function": {...}}]).
struct ToolDefinition {
  std::string name;
  nlohmann::ordered_json parameters;  // a JSON Schema; null when the tool gave none (any object)
};

// tool_choice: "auto" (the model decides), "none", "required" (some call), or a named function.
// Required and named calls are enforced by the grammar; auto ones are found in the output.
struct ToolChoice {
  enum class Kind { Auto, None, Required, Function };
  Kind kind = Kind::Auto;
  std::string name;  // Function
};

struct GenerationParams {
  std::optional<int> max_tokens;  // absent: the server picks (what the context has room for)
  model::SamplingParams sampling;
  bool seed_given = false;        // otherwise the server draws a fresh seed
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage: a last chunk carries usage
  // Each generated token's log-prob and this many alternatives (chat: "logprobs": true with
  // "top_logprobs" 0-20; completions: "logprobs" 0-5); -1: none.
  int logprobs = -1;
  ResponseFormat response_format;
  // logit_bias: token id -> added to its logit before sampling (greedy too), in [-100, 100]; -100
  // bans the token. Ids are checked against the vocabulary by the server, which knows it.
  std::vector<std::pair<int32_t, float>> logit_bias;
  // n: choices per prompt (1..kMaxChoices), sampled independently from one prefill; with a seed,
  // choice i uses seed + i.
  int n = 1;
};

struct ChatRequest {
  std::string model;
  std::vector<model::ChatMessage> messages;
  GenerationParams params;
  // The conversation as a chat template receives it (transformers' conventions): messages with
  // role, content (null for an assistant turn that only calls tools), tool_calls (each
  // {id, type, function: {name, arguments}}, arguments parsed into an object where they are JSON),
  // tool_call_id and name; set when some message carries a tool call or result, else null (the
  // role/content `messages` say it all).
  nlohmann::ordered_json conversation;
  std::vector<ToolDefinition> tools;
  nlohmann::ordered_json tools_json;  // "tools" as sent (the template's `tools`), null when none
  ToolChoice tool_choice;
  bool parallel_tool_calls = true;
};

// One prompt of /v1/completions: text (completed as it is) or token ids (ids are checked against
// the vocabulary by the server).
using CompletionPrompt = std::variant<std::string, std::vector<int32_t>>;

struct CompletionRequest {
  std::string model;
  // "prompt": a string, an array of strings, an array of token ids or an array of such arrays
  // (1..kMaxPrompts prompts; with n, at most kMaxChoicesPerRequest choices in all). Choice
  // prompt_index * n + i is prompt prompt_index's i-th.
  std::vector<CompletionPrompt> prompts;
  GenerationParams params;
};

// The body as a JSON object, or a 400 saying why not: empty, nested deeper than kMaxJsonDepth,
// not JSON (with the parser's position), a number out of a double's range (naming its field), or
// not an object. Shared by every JSON route so that all of them refuse the same way.
ApiResult<nlohmann::json> parse_json_object(std::string_view body);

ApiResult<ChatRequest> parse_chat_request(std::string_view body);
ApiResult<CompletionRequest> parse_completion_request(std::string_view body);

// POST /v1/embeddings.
struct EmbeddingRequest {
  std::string model;
  // "input": a string, an array of strings, an array of token ids or an array of token arrays
  // (1..kMaxEmbeddingInputs inputs, none an empty string); data[i] of the answer is input i's.
  std::vector<CompletionPrompt> inputs;
  bool base64 = false;  // encoding_format "base64" (else "float")
  std::optional<int64_t> dimensions;  // the server checks it against the model's width
};
ApiResult<EmbeddingRequest> parse_embedding_request(std::string_view body);

// The deepest nesting of arrays and objects in `text`, scanning no further than limit + 1 levels
// (strings are skipped, escapes honoured). Not a validator: the parser does that afterwards.
int json_nesting_depth(std::string_view text, int limit);

}  // namespace omni::gateway
