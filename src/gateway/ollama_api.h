// Ollama's API (/api/chat, /api/generate, /api/tags, /api/show, /api/version) on the same engine
// as the OpenAI routes, so front ends and libraries written for Ollama work against the gateway.
//
// Requests are read into the OpenAI parser's structures (openai_request.h), with Ollama's names
// ("options.num_predict", "options.stop", ...) and Ollama's sampling defaults (temperature 0.8,
// top_k 40, top_p 0.9, repeat_penalty 1.1 over the last 64 tokens, a fresh seed), and "stream"
// on unless it is false. "format" ("json" or a JSON Schema) is enforced by grammar-constrained
// sampling; "tools" and messages with tool_calls (arguments as objects) or the tool role work as
// on the OpenAI route, with OpenAI's "tool_choice" accepted as an extension (Ollama has none);
// an answer's calls come back as message.tool_calls. What this gateway cannot do is refused with
// a 400 naming the field, never ignored: "images", "template", "suffix", "context".
// A model name with Ollama's default tag (":latest") names the model without it.
//
// Answers are Ollama's: a stream is NDJSON (one object a line: the new text, then a last object
// with "done": true, "done_reason" and the token counts and durations in nanoseconds), a whole
// answer is that last object with all of the text; errors are {"error": "message"} with the
// status the OpenAI routes would give.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "gateway/api_error.h"
#include "gateway/engine_backend.h"
#include "gateway/model_catalog.h"
#include "gateway/openai_request.h"

namespace omni::gateway {

// POST /api/generate. Unless `raw`, the prompt (after the optional system message) is one user
// turn rendered by the model's chat template, as Ollama does; raw prompts are completed as text.
struct OllamaGenerateRequest {
  std::string model;
  std::string prompt;
  std::optional<std::string> system;
  bool raw = false;
  GenerationParams params;
};

ApiResult<ChatRequest> parse_ollama_chat(std::string_view body);
ApiResult<OllamaGenerateRequest> parse_ollama_generate(std::string_view body);
// POST /api/show: the model's name ("model", or the older "name").
ApiResult<std::string> parse_ollama_show(std::string_view body);

enum class OllamaEndpoint { Chat, Generate };

// How long the parts of one generation took, for the last object.
struct OllamaTimings {
  std::chrono::nanoseconds total{0};        // from arrival to the end
  std::chrono::nanoseconds prompt_eval{0};  // from arrival to the first generated text
  size_t prompt_tokens = 0;
  size_t completion_tokens = 0;
};

// One streamed object with new text ("done": false).
nlohmann::json ollama_chunk(OllamaEndpoint endpoint, const std::string& model, const std::string& text);
// The last object: "done": true with the reason ("stop" or "length") and the timings; `text` is
// the whole answer for a request that did not stream, "" for the end of a stream.
nlohmann::json ollama_done(OllamaEndpoint endpoint, const std::string& model, const std::string& text,
                           const std::string& done_reason, const OllamaTimings& timings);
nlohmann::json ollama_error(const ApiError& error);

// GET /api/tags and POST /api/show.
nlohmann::json ollama_tags(const std::vector<CatalogEntry>& models);
nlohmann::json ollama_show(const CatalogEntry& model, const ModelDescription& description);

// The time now as Ollama writes it (RFC 3339, UTC, nanoseconds).
std::string ollama_timestamp();

}  // namespace omni::gateway
