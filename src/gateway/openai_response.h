// The JSON bodies OpenAI's API returns: model lists, chat and text completions, and their
// streamed chunks (each sent as one server-sent event; see sse.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gateway/generation_job.h"
#include "gateway/model_catalog.h"
#include "gateway/tool_calls.h"

#include <nlohmann/json.hpp>

namespace omni::gateway {

enum class Endpoint { Chat, Completion };

struct Usage {
  size_t prompt_tokens = 0;
  size_t completion_tokens = 0;
};

// What every response and chunk of one request shares.
struct ResponseIdentity {
  Endpoint endpoint = Endpoint::Chat;
  std::string id;      // "chatcmpl-…" or "cmpl-…", the same in every chunk of a stream
  int64_t created = 0; // unix seconds
  std::string model;
};

// A fresh identity: a random id with the endpoint's prefix, created now.
ResponseIdentity new_response_identity(Endpoint endpoint, std::string model);

// GET /v1/models: OpenAI's list of model objects, each with extensions: "context_length" (the
// tokens one request's prompt and completion may hold together), which clients use to trim
// history, and, for a model served from content-addressed shards, "cid".
nlohmann::json model_object(const CatalogEntry& model, int64_t created);
nlohmann::json model_list(const std::vector<CatalogEntry>& models, int64_t created);

// A choice's "logprobs" for `tokens`, in the endpoint's format: chat's {"content": [{token,
// logprob, bytes, top_logprobs}]}, or the text completions' {tokens, token_logprobs, top_logprobs,
// text_offset}, whose offsets count from `text_offset` (advanced past the tokens: a stream passes
// the same counter to every chunk). Null when the request did not ask for log-probs.
nlohmann::json logprobs_json(Endpoint endpoint, const std::vector<TokenLogprob>* tokens, size_t& text_offset);

// The whole answer (stream: false). `logprobs`: null, or logprobs_json()'s.
nlohmann::json completion_response(const ResponseIdentity& who, const std::string& text,
                                   const std::string& finish_reason, const Usage& usage,
                                   nlohmann::json logprobs = nullptr);

// A chat answer that calls tools: message.tool_calls (each {id, type: "function", function: {name,
// arguments}}), message.content the text beside the calls or null, finish_reason "tool_calls".
nlohmann::json tool_calls_response(const ResponseIdentity& who, const ParsedAnswer& answer, const Usage& usage,
                                   nlohmann::json logprobs = nullptr);
// The chunks that stream `calls` as OpenAI does: per call, one delta with its index, id, type and
// name (arguments ""), then one with its arguments.
std::vector<nlohmann::json> tool_call_chunks(const ResponseIdentity& who, const std::vector<ToolCall>& calls);

// One choice of a whole answer with several (n > 1, or a batch of prompts): its index is its
// position in the list.
struct CompletionChoice {
  std::string text;
  std::string finish_reason;
  nlohmann::json logprobs;  // null, or logprobs_json()'s
};
nlohmann::json completion_response(const ResponseIdentity& who, const std::vector<CompletionChoice>& choices,
                                   const Usage& usage);

// One chunk of a stream, for choice `index`. Chat: the first chunk carries the role; `text` may
// be empty; a finish_reason marks the choice's last content chunk.
nlohmann::json stream_chunk(const ResponseIdentity& who, const std::string& text, bool first,
                            const std::optional<std::string>& finish_reason, nlohmann::json logprobs = nullptr,
                            size_t index = 0);
// POST /v1/embeddings' answer: data[i] is vectors[i], as an array of numbers or, with `base64`,
// as OpenAI encodes it: the base64 of its float32 values' little-endian bytes.
nlohmann::json embeddings_response(const std::string& model, const std::vector<std::vector<float>>& vectors,
                                   bool base64, size_t prompt_tokens);
std::string base64_of_floats(const std::vector<float>& values);

// The extra last chunk of stream_options.include_usage: no choices, the usage.
nlohmann::json usage_chunk(const ResponseIdentity& who, const Usage& usage);

}  // namespace omni::gateway
