#include "gateway/openai_response.h"

#include <chrono>
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

json completion_response(const ResponseIdentity& who, const std::string& text, const std::string& finish_reason,
                         const Usage& usage) {
  json choice = {{"index", 0}, {"finish_reason", finish_reason}, {"logprobs", nullptr}};
  if (who.endpoint == Endpoint::Chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  return {{"id", who.id},
          {"object", object_name(who.endpoint, false)},
          {"created", who.created},
          {"model", who.model},
          {"choices", json::array({std::move(choice)})},
          {"usage", usage_json(usage)}};
}

json stream_chunk(const ResponseIdentity& who, const std::string& text, bool first,
                  const std::optional<std::string>& finish_reason) {
  json choice = {{"index", 0}, {"logprobs", nullptr}};
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

json usage_chunk(const ResponseIdentity& who, const Usage& usage) {
  return {{"id", who.id},
          {"object", object_name(who.endpoint, true)},
          {"created", who.created},
          {"model", who.model},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

}  // namespace omni::gateway
