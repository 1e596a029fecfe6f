#include "gateway/openai_response.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <random>

namespace omni::gateway {
namespace {

using nlohmann::json;

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

const char* object_name(Endpoint e, bool chunk) {
  if (e == Endpoint::Completion) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

}  // namespace

ResponseIdentity new_response_identity(Endpoint endpoint, std::string model) {
  // Ids only need to be unique enough to tell responses apart in logs; not a secret.
  thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return ResponseIdentity{endpoint, std::move(id), now, std::move(model)};
}

json model_object(const CatalogEntry& model, int64_t created) {
  json m = {{"id", model.id},
            {"object", "model"},
            {"created", created},
            {"owned_by", "omninode"},
            {"context_length", model.context_length}};
  if (!model.cid.empty()) m["cid"] = model.cid;
  return m;
}

json model_list(const std::vector<CatalogEntry>& models, int64_t created) {
  json data = json::array();
  for (const auto& m : models) data.push_back(model_object(m, created));
  return {{"object", "list"}, {"data", std::move(data)}};
}

json logprobs_json(Endpoint endpoint, const std::vector<TokenLogprob>* tokens, size_t& text_offset) {
  if (!tokens) return nullptr;
  // Token bytes may be part of a UTF-8 character: "bytes" carries them exactly, "token" is what
  // JSON can hold (invalid sequences become U+FFFD when dumped).
  auto bytes_of = [](const std::string& s) {
    json out = json::array();
    for (unsigned char c : s) out.push_back(static_cast<int>(c));
    return out;
  };
  if (endpoint == Endpoint::Chat) {
    json content = json::array();
    for (const TokenLogprob& t : *tokens) {
      json top = json::array();
      for (const auto& [token, lp] : t.top) top.push_back({{"token", token}, {"logprob", lp}, {"bytes", bytes_of(token)}});
      content.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", bytes_of(t.token)}, {"top_logprobs", top}});
      text_offset += t.token.size();
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const TokenLogprob& t : *tokens) {
    out["tokens"].push_back(t.token);
    out["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const auto& [token, lp] : t.top) top[token] = lp;
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(text_offset);
    text_offset += t.token.size();
  }
  return out;
}

json completion_response(const ResponseIdentity& who, const std::string& text, const std::string& finish_reason,
                         const Usage& usage, json logprobs) {
  return completion_response(who, {CompletionChoice{text, finish_reason, std::move(logprobs)}}, usage);
}

json completion_response(const ResponseIdentity& who, const std::vector<CompletionChoice>& choices,
                         const Usage& usage) {
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const CompletionChoice& c = choices[i];
    json choice = {{"index", i}, {"finish_reason", c.finish_reason}, {"logprobs", c.logprobs}};
    if (who.endpoint == Endpoint::Chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else choice["text"] = c.text;
    list.push_back(std::move(choice));
  }
  return {{"id", who.id},
          {"object", object_name(who.endpoint, false)},
          {"created", who.created},
          {"model", who.model},
          {"choices", std::move(list)},
          {"usage", usage_json(usage)}};
}

json tool_calls_response(const ResponseIdentity& who, const ParsedAnswer& answer, const Usage& usage, json logprobs) {
  json body = completion_response(who, answer.content, "tool_calls", usage, std::move(logprobs));
  json calls = json::array();
  for (const ToolCall& c : answer.calls)
    calls.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  json& message = body["choices"][0]["message"];
  if (answer.content.empty()) message["content"] = nullptr;
  message["tool_calls"] = std::move(calls);
  return body;
}

std::vector<json> tool_call_chunks(const ResponseIdentity& who, const std::vector<ToolCall>& calls) {
  std::vector<json> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const json head = {{"index", i}, {"id", calls[i].id}, {"type", "function"},
                       {"function", {{"name", calls[i].name}, {"arguments", ""}}}};
    const json args = {{"index", i}, {"function", {{"arguments", calls[i].arguments}}}};
    for (const json& delta : {head, args}) {
      json chunk = stream_chunk(who, "", false, std::nullopt);
      chunk["choices"][0]["delta"] = {{"tool_calls", json::array({delta})}};
      out.push_back(std::move(chunk));
    }
  }
  return out;
}

json stream_chunk(const ResponseIdentity& who, const std::string& text, bool first,
                  const std::optional<std::string>& finish_reason, json logprobs, size_t index) {
  json choice = {{"index", index}, {"logprobs", std::move(logprobs)}};
  choice["finish_reason"] = finish_reason ? json(*finish_reason) : json(nullptr);
  if (who.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && !finish_reason)) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  return {{"id", who.id},
          {"object", object_name(who.endpoint, true)},
          {"created", who.created},
          {"model", who.model},
          {"choices", json::array({std::move(choice)})}};
}

std::string base64_of_floats(const std::vector<float>& values) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> bytes;
  bytes.reserve(values.size() * 4);
  for (float v : values) {
    const uint32_t bits = std::bit_cast<uint32_t>(v);
    for (int k = 0; k < 4; ++k) bytes.push_back(static_cast<uint8_t>(bits >> (8 * k)));  // little-endian
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = uint32_t{bytes[i]} << 16;
    if (n > 1) group |= uint32_t{bytes[i + 1]} << 8;
    if (n > 2) group |= bytes[i + 2];
    for (size_t k = 0; k < 4; ++k) out.push_back(k <= n ? kDigits[(group >> (18 - 6 * k)) & 63] : '=');
  }
  return out;
}

json embeddings_response(const std::string& model, const std::vector<std::vector<float>>& vectors, bool base64,
                         size_t prompt_tokens) {
  json data = json::array();
  for (size_t i = 0; i < vectors.size(); ++i)
    data.push_back({{"object", "embedding"},
                    {"index", i},
                    {"embedding", base64 ? json(base64_of_floats(vectors[i])) : json(vectors[i])}});
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
}

json usage_chunk(const ResponseIdentity& who, const Usage& usage) {
  return {{"id", who.id},
          {"object", object_name(who.endpoint, true)},
          {"created", who.created},
          {"model", who.model},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

}  // namespace omni::gateway
