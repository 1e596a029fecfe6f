#include "gateway/ollama_api.h"

#include <ctime>
#include <string>
#include <utility>

namespace omni::gateway {
namespace {

using nlohmann::json;

// Ollama's names under "options" that mean the same as a top-level OpenAI field.
struct OptionName {
  const char* ollama;
  const char* openai;
};
constexpr OptionName kSameOptions[] = {
    {"temperature", "temperature"},       {"top_p", "top_p"},
    {"top_k", "top_k"},                   {"min_p", "min_p"},
    {"seed", "seed"},                     {"stop", "stop"},
    {"repeat_penalty", "repeat_penalty"}, {"presence_penalty", "presence_penalty"},
    {"frequency_penalty", "frequency_penalty"},
};

// Fields of Ollama's requests this gateway cannot honour: refused, not ignored.
constexpr const char* kRefusedFields[] = {"images", "template", "suffix", "context"};

ApiError wrong_type(const std::string& field, const char* expected) {
  return bad_request("'" + field + "' must be " + expected, field);
}

std::string model_name(std::string name) {
  constexpr std::string_view kDefaultTag = ":latest";
  if (name.size() > kDefaultTag.size() && name.compare(name.size() - kDefaultTag.size(), kDefaultTag.size(), kDefaultTag) == 0)
    name.resize(name.size() - kDefaultTag.size());
  return name;
}

ApiResult<json> parse_body(std::string_view body) {
  auto parsed = parse_json_object(body);
  if (!parsed) return parsed.error();
  json j = std::move(parsed.value());
  for (const char* field : kRefusedFields)
    if (auto it = j.find(field); it != j.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()) &&
                                 !(it->is_array() && it->empty()))
      return bad_request("'" + std::string(field) + "' is not supported by this gateway", field);
  return j;
}

// The request in the OpenAI parser's terms: model, stream (on by default) and the options, with
// Ollama's defaults where the request leaves them out. `repeat_last_n` is not an OpenAI field.
ApiResult<json> openai_shape(const json& body, int& repeat_last_n) {
  json out = {{"temperature", 0.8}, {"top_k", 40}, {"top_p", 0.9}, {"min_p", 0.0}, {"repeat_penalty", 1.1}};
  repeat_last_n = 64;
  if (auto it = body.find("model"); it != body.end()) {
    if (!it->is_string()) return wrong_type("model", "a string");
    out["model"] = model_name(it->get<std::string>());
  }
  out["stream"] = true;
  if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return wrong_type("stream", "a boolean");
    out["stream"] = it->get<bool>();
  }
  auto options = body.find("options");
  if (options == body.end() || options->is_null()) return out;
  if (!options->is_object()) return wrong_type("options", "an object");
  for (const OptionName& o : kSameOptions)
    if (auto it = options->find(o.ollama); it != options->end() && !it->is_null()) out[o.openai] = *it;
  if (auto it = options->find("num_predict"); it != options->end() && !it->is_null()) {
    if (!it->is_number_integer()) return wrong_type("options.num_predict", "an integer");
    const int64_t n = it->get<int64_t>();
    // -1: until the context is full or the model stops; -2: fill the context. Both are what an
    // absent max_tokens does here.
    if (n != -1 && n != -2) {
      if (n < 1) return bad_request("'options.num_predict' must be positive, -1 or -2", "options.num_predict");
      out["max_tokens"] = n;
    }
  }
  if (auto it = options->find("repeat_last_n"); it != options->end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < -1 || it->get<int64_t>() > (1 << 20))
      return bad_request("'options.repeat_last_n' must be an integer from -1 to 1048576", "options.repeat_last_n");
    repeat_last_n = static_cast<int>(it->get<int64_t>());
  }
  return out;
}

// An error from the OpenAI parser, its field named as the Ollama request names it.
ApiError in_ollama_terms(ApiError e) {
  if (!e.param) return e;
  if (*e.param == "max_tokens") {
    e.param = "options.num_predict";
    return e;
  }
  for (const OptionName& o : kSameOptions)
    if (*e.param == o.openai) e.param = "options." + std::string(o.ollama);
  return e;
}

// "format": "json" (any JSON object) or a JSON Schema, read in the body's own key order (a schema's
// properties are generated in it).
ApiResult<ResponseFormat> read_format(std::string_view body) {
  const auto j = nlohmann::ordered_json::parse(body, nullptr, false);
  ResponseFormat f;
  auto it = j.find("format");
  if (it == j.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty())) return f;
  if (it->is_string() && it->get<std::string>() == "json") {
    f.kind = ResponseFormat::Kind::JsonObject;
  } else if (it->is_object()) {
    f.kind = ResponseFormat::Kind::JsonSchema;
    f.schema = *it;
  } else {
    return bad_request("'format' must be \"json\" or a JSON Schema object", "format");
  }
  return f;
}

json timing_fields(const OllamaTimings& t) {
  const int64_t total = t.total.count(), prompt = t.prompt_eval.count();
  return {{"total_duration", total},
          {"load_duration", 0},
          {"prompt_eval_count", t.prompt_tokens},
          {"prompt_eval_duration", prompt},
          {"eval_count", t.completion_tokens},
          {"eval_duration", total > prompt ? total - prompt : 0}};
}

json text_field(OllamaEndpoint endpoint, const std::string& text) {
  if (endpoint == OllamaEndpoint::Chat) return {{"message", {{"role", "assistant"}, {"content", text}}}};
  return {{"response", text}};
}

}  // namespace

ApiResult<ChatRequest> parse_ollama_chat(std::string_view body) {
  auto j = parse_body(body);
  if (!j) return j.error();
  int repeat_last_n = 0;
  auto shaped = openai_shape(*j, repeat_last_n);
  if (!shaped) return shaped.error();
  if (auto it = j->find("messages"); it != j->end()) {
    if (it->is_array())
      for (size_t i = 0; i < it->size(); ++i)
        for (const char* field : {"images"})
          if (const json& m = (*it)[i]; m.is_object() && m.contains(field) && !m[field].is_null() && !m[field].empty())
            return bad_request("messages[" + std::to_string(i) + "]." + field + " is not supported by this gateway",
                               "messages[" + std::to_string(i) + "]." + field);
    (*shaped)["messages"] = *it;
  }
  // Ollama has no tool_choice; this gateway takes OpenAI's as an extension (a model must be told to
  // call when it would not choose to).
  for (const char* field : {"tools", "tool_choice"})
    if (auto it = j->find(field); it != j->end() && !it->is_null()) (*shaped)[field] = *it;
  auto format = read_format(body);
  if (!format) return format.error();
  auto parsed = parse_chat_request(shaped->dump());
  if (!parsed) return in_ollama_terms(parsed.error());
  parsed->params.sampling.repeat_last_n = repeat_last_n;
  parsed->params.response_format = std::move(*format);
  return parsed;
}

ApiResult<OllamaGenerateRequest> parse_ollama_generate(std::string_view body) {
  auto j = parse_body(body);
  if (!j) return j.error();
  int repeat_last_n = 0;
  auto shaped = openai_shape(*j, repeat_last_n);
  if (!shaped) return shaped.error();
  OllamaGenerateRequest r;
  if (auto it = j->find("prompt"); it != j->end() && !it->is_null()) {
    if (!it->is_string()) return wrong_type("prompt", "a string");
    r.prompt = it->get<std::string>();
  }
  if (auto it = j->find("system"); it != j->end() && !it->is_null()) {
    if (!it->is_string()) return wrong_type("system", "a string");
    r.system = it->get<std::string>();
  }
  if (auto it = j->find("raw"); it != j->end() && !it->is_null()) {
    if (!it->is_boolean()) return wrong_type("raw", "a boolean");
    r.raw = it->get<bool>();
  }
  if (r.raw && r.system) return bad_request("'system' cannot be used with \"raw\": true", "system");
  (*shaped)["prompt"] = r.prompt;
  auto parsed = parse_completion_request(shaped->dump());
  if (!parsed) return in_ollama_terms(parsed.error());
  r.model = std::move(parsed->model);
  r.params = std::move(parsed->params);
  r.params.sampling.repeat_last_n = repeat_last_n;
  auto format = read_format(body);
  if (!format) return format.error();
  r.params.response_format = std::move(*format);
  return r;
}

ApiResult<std::string> parse_ollama_show(std::string_view body) {
  auto j = parse_body(body);
  if (!j) return j.error();
  for (const char* field : {"model", "name"})
    if (auto it = j->find(field); it != j->end() && !it->is_null()) {
      if (!it->is_string()) return wrong_type(field, "a string");
      return model_name(it->get<std::string>());
    }
  return bad_request("'model' is required (see GET /api/tags)", "model");
}

json ollama_chunk(OllamaEndpoint endpoint, const std::string& model, const std::string& text) {
  json out = {{"model", model}, {"created_at", ollama_timestamp()}};
  out.update(text_field(endpoint, text));
  out["done"] = false;
  return out;
}

json ollama_done(OllamaEndpoint endpoint, const std::string& model, const std::string& text,
                 const std::string& done_reason, const OllamaTimings& timings) {
  json out = {{"model", model}, {"created_at", ollama_timestamp()}};
  out.update(text_field(endpoint, text));
  out["done"] = true;
  out["done_reason"] = done_reason;
  out.update(timing_fields(timings));
  return out;
}

json ollama_error(const ApiError& error) { return {{"error", error.message}}; }

json ollama_tags(const std::vector<CatalogEntry>& models) {
  json list = json::array();
  for (const CatalogEntry& m : models) {
    json entry = {{"name", m.id},
                  {"model", m.id},
                  {"modified_at", ollama_timestamp()},
                  {"size", 0},
                  {"digest", m.cid},
                  {"details", {{"format", "gguf"}}}};
    list.push_back(std::move(entry));
  }
  return {{"models", std::move(list)}};
}

json ollama_show(const CatalogEntry& model, const ModelDescription& description) {
  json info = {{"general.architecture", description.architecture},
               {description.architecture + ".block_count", description.n_layer},
               {description.architecture + ".context_length", model.context_length}};
  if (!model.cid.empty()) info["omni.cid"] = model.cid;
  return {{"template", description.chat_template_source},
          {"parameters", ""},
          {"details", {{"format", "gguf"}, {"family", description.architecture},
                       {"families", json::array({description.architecture})}}},
          {"model_info", std::move(info)},
          {"capabilities", json::array({"completion"})}};
}

std::string ollama_timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto since_epoch = now.time_since_epoch();
  const std::time_t seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
  const long long nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count() % 1000000000LL;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  const size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%09lldZ", nanos);
  return text;
}

}  // namespace omni::gateway
