#include "gateway/openai_request.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>

namespace omni::gateway {
namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

ApiError wrong_type(const std::string& field, const char* expected, const json& got) {
  return bad_request("'" + field + "' must be " + expected + ", not " + type_name(got), field);
}


// Optional number field in [lo, hi]; returns an error or stores it.
std::optional<ApiError> read_number(const json& body, const char* field, double lo, double hi, float& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return wrong_type(field, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    return bad_request("'" + std::string(field) + "' must be between " + json(lo).dump() + " and " + json(hi).dump() +
                           ", not " + it->dump(),
                       field);
  out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> read_int(const json& body, const char* field, int64_t lo, int64_t hi,
                                 std::optional<int64_t>& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  // 3.0 is accepted as 3 (JavaScript clients have no integer type); 3.5 is not.
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (!std::isfinite(d) || std::floor(d) != d) return wrong_type(field, "an integer", *it);
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
      return bad_request("'" + std::string(field) + "' must be between " + std::to_string(lo) + " and " +
                             std::to_string(hi),
                         field);
    out = static_cast<int64_t>(d);
    return std::nullopt;
  }
  if (!it->is_number_integer()) return wrong_type(field, "an integer", *it);
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return bad_request("'" + std::string(field) + "' is too large", field);
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi)
    return bad_request("'" + std::string(field) + "' must be between " + std::to_string(lo) + " and " +
                           std::to_string(hi) + ", not " + std::to_string(v),
                       field);
  out = v;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& body, const char* field, bool& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return wrong_type(field, "a boolean", *it);
  out = it->get<bool>();
  return std::nullopt;
}

// logit_bias: {"<token id>": bias, ...}, OpenAI's shape (JSON keys are strings).
std::optional<ApiError> read_logit_bias(const json& body, std::vector<std::pair<int32_t, float>>& out) {
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return wrong_type("logit_bias", "an object mapping token ids to biases", *it);
  if (it->size() > kMaxLogitBias)
    return bad_request("'logit_bias' may hold at most " + std::to_string(kMaxLogitBias) + " tokens", "logit_bias");
  for (const auto& [key, value] : it->items()) {
    const std::string where = "logit_bias." + key;
    int64_t id = key.empty() || key.size() > 10 ? -1 : 0;
    for (size_t i = 0; id >= 0 && i < key.size(); ++i)
      id = key[i] >= '0' && key[i] <= '9' ? id * 10 + (key[i] - '0') : -1;
    if (id < 0 || id > std::numeric_limits<int32_t>::max())
      return bad_request("'logit_bias' keys must be token ids (non-negative integers), not \"" + key + "\"", where);
    if (!value.is_number()) return wrong_type(where, "a number", value);
    const double bias = value.get<double>();
    if (!std::isfinite(bias) || bias < -100.0 || bias > 100.0)
      return bad_request("'" + where + "' must be between -100 and 100, not " + value.dump(), where);
    out.emplace_back(static_cast<int32_t>(id), static_cast<float>(bias));
  }
  return std::nullopt;
}

// The fields chat and text completions share.
ApiResult<GenerationParams> read_params(const json& body) {
  GenerationParams p;
  // OpenAI's defaults: sampling from the full, untempered distribution unless asked otherwise.
  p.sampling.temperature = 1.0f;
  p.sampling.top_k = 0;
  p.sampling.top_p = 1.0f;
  p.sampling.min_p = 0.0f;
  p.sampling.repeat_penalty = 1.0f;
  p.sampling.seed = 0;

  if (auto e = read_bool(body, "stream", p.stream)) return *e;
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return wrong_type("stream_options", "an object", *it);
    if (!p.stream) return bad_request("'stream_options' is only allowed with \"stream\": true", "stream_options");
    if (auto e = read_bool(*it, "include_usage", p.include_usage)) {
      ApiError err = *e;
      err.param = "stream_options.include_usage";
      return err;
    }
  }
  std::optional<int64_t> max_tokens, max_completion_tokens, n, seed, top_k;
  if (auto e = read_int(body, "max_tokens", 1, 1 << 24, max_tokens)) return *e;
  if (auto e = read_int(body, "max_completion_tokens", 1, 1 << 24, max_completion_tokens)) return *e;
  if (max_completion_tokens) max_tokens = max_completion_tokens;  // the newer name wins
  if (max_tokens) p.max_tokens = static_cast<int>(*max_tokens);
  if (auto e = read_int(body, "n", 1, kMaxChoices, n)) return *e;
  if (n) p.n = static_cast<int>(*n);
  if (auto e = read_int(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), seed))
    return *e;
  if (seed) {
    p.sampling.seed = static_cast<uint64_t>(*seed);
    p.seed_given = true;
  }
  if (auto e = read_number(body, "temperature", 0.0, 2.0, p.sampling.temperature)) return *e;
  if (auto e = read_number(body, "top_p", 0.0, 1.0, p.sampling.top_p)) return *e;
  if (auto e = read_number(body, "frequency_penalty", -2.0, 2.0, p.sampling.frequency_penalty)) return *e;
  if (auto e = read_number(body, "presence_penalty", -2.0, 2.0, p.sampling.presence_penalty)) return *e;
  if (auto e = read_int(body, "top_k", 0, 1 << 20, top_k)) return *e;
  if (top_k) p.sampling.top_k = static_cast<int>(*top_k);
  if (auto e = read_number(body, "min_p", 0.0, 1.0, p.sampling.min_p)) return *e;
  if (auto e = read_number(body, "repeat_penalty", 1e-3, 100.0, p.sampling.repeat_penalty)) return *e;
  if (auto e = read_logit_bias(body, p.logit_bias)) return *e;

  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      p.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->size() > kMaxStopStrings)
        return bad_request("'stop' may hold at most " + std::to_string(kMaxStopStrings) + " strings", "stop");
      for (const auto& s : *it) {
        if (!s.is_string()) return wrong_type("stop", "a string or an array of strings", s);
        p.stop.push_back(s.get<std::string>());
      }
    } else {
      return wrong_type("stop", "a string or an array of strings", *it);
    }
    for (const auto& s : p.stop)
      if (s.size() > kMaxStopLength)
        return bad_request("a 'stop' string is longer than " + std::to_string(kMaxStopLength) + " bytes", "stop");
  }
  return p;
}

ApiResult<std::string> read_model(const json& body) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) return bad_request("'model' is required (see GET /v1/models)", "model");
  if (!it->is_string()) return wrong_type("model", "a string", *it);
  return it->get<std::string>();
}

// Message content: a string, or an array of parts of which only {"type":"text","text":...} exist here.
ApiResult<std::string> read_content(const json& message, const std::string& where) {
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) return bad_request(where + ".content is required", where + ".content");
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) return wrong_type(where + ".content", "a string or an array of text parts", *it);
  std::string text;
  for (const auto& part : *it) {
    if (!part.is_object()) return wrong_type(where + ".content", "a string or an array of text parts", part);
    auto type = part.find("type");
    auto value = part.find("text");
    if (type == part.end() || !type->is_string() || *type != "text" || value == part.end() || !value->is_string())
      return bad_request(where + ".content: only parts of type \"text\" with a string 'text' are supported",
                         where + ".content");
    text += value->get<std::string>();
  }
  return text;
}

using ojson = nlohmann::ordered_json;

// A tool or function name as OpenAI allows it: 1-64 of [A-Za-z0-9_-].
bool valid_tool_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  return true;
}

ApiResult<ResponseFormat> read_response_format(const ojson& j) {
  ResponseFormat f;
  auto it = j.find("response_format");
  if (it == j.end() || it->is_null()) return f;
  if (!it->is_object() || !it->contains("type") || !(*it)["type"].is_string())
    return bad_request("'response_format' must be an object with a string 'type'", "response_format");
  const std::string type = (*it)["type"].get<std::string>();
  if (type == "text") return f;
  if (type == "json_object") {
    f.kind = ResponseFormat::Kind::JsonObject;
    return f;
  }
  if (type != "json_schema")
    return bad_request("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", not \"" + type +
                           "\"",
                       "response_format.type");
  auto js = it->find("json_schema");
  if (js == it->end() || !js->is_object())
    return bad_request("'response_format.json_schema' must be an object", "response_format.json_schema");
  auto schema = js->find("schema");
  if (schema == js->end() || !(schema->is_object() || schema->is_boolean()))
    return bad_request("'response_format.json_schema.schema' must be a JSON Schema object",
                       "response_format.json_schema.schema");
  if (auto name = js->find("name"); name != js->end() && !name->is_null()) {
    if (!name->is_string()) return bad_request("'response_format.json_schema.name' must be a string", "response_format.json_schema.name");
    f.name = name->get<std::string>();
  }
  if (auto strict = js->find("strict"); strict != js->end() && !strict->is_null()) {
    if (!strict->is_boolean())
      return bad_request("'response_format.json_schema.strict' must be a boolean", "response_format.json_schema.strict");
    f.strict = strict->get<bool>();
  }
  f.kind = ResponseFormat::Kind::JsonSchema;
  f.schema = *schema;
  return f;
}

// tools, tool_choice, parallel_tool_calls into `r`.
std::optional<ApiError> read_tools(const ojson& j, ChatRequest& r) {
  if (auto it = j.find("tools"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return bad_request("'tools' must be an array", "tools");
    if (it->size() > kMaxTools)
      return bad_request("'tools' may hold at most " + std::to_string(kMaxTools) + " tools", "tools");
    for (size_t i = 0; i < it->size(); ++i) {
      const ojson& t = (*it)[i];
      const std::string where = "tools[" + std::to_string(i) + "]";
      if (!t.is_object() || t.value("type", "") != "function" || !t.contains("function") || !t["function"].is_object())
        return bad_request(where + " must be {\"type\": \"function\", \"function\": {...}}", where);
      const ojson& f = t["function"];
      if (!f.contains("name") || !f["name"].is_string() || !valid_tool_name(f["name"].get<std::string>()))
        return bad_request(where + ".function.name must be 1-64 letters, digits, '_' or '-'", where + ".function.name");
      ToolDefinition d;
      d.name = f["name"].get<std::string>();
      for (const ToolDefinition& other : r.tools)
        if (other.name == d.name) return bad_request(where + ": two tools are named '" + d.name + "'", where + ".function.name");
      if (auto p = f.find("parameters"); p != f.end() && !p->is_null()) {
        if (!p->is_object()) return bad_request(where + ".function.parameters must be a JSON Schema object", where + ".function.parameters");
        d.parameters = *p;
      }
      r.tools.push_back(std::move(d));
    }
    if (!r.tools.empty()) r.tools_json = *it;
  }
  if (auto it = j.find("tool_choice"); it != j.end() && !it->is_null()) {
    if (it->is_string()) {
      const std::string c = it->get<std::string>();
      if (c == "auto") r.tool_choice.kind = ToolChoice::Kind::Auto;
      else if (c == "none") r.tool_choice.kind = ToolChoice::Kind::None;
      else if (c == "required") r.tool_choice.kind = ToolChoice::Kind::Required;
      else return bad_request("'tool_choice' must be \"auto\", \"none\", \"required\" or a function", "tool_choice");
    } else if (it->is_object() && it->value("type", "") == "function" && it->contains("function") &&
               (*it)["function"].is_object() && (*it)["function"].contains("name") &&
               (*it)["function"]["name"].is_string()) {
      r.tool_choice.kind = ToolChoice::Kind::Function;
      r.tool_choice.name = (*it)["function"]["name"].get<std::string>();
      const bool known = std::any_of(r.tools.begin(), r.tools.end(),
                                     [&](const ToolDefinition& d) { return d.name == r.tool_choice.name; });
      if (!known) return bad_request("'tool_choice' names '" + r.tool_choice.name + "', which is not in 'tools'", "tool_choice");
    } else {
      return bad_request("'tool_choice' must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                         "tool_choice");
    }
    if (r.tool_choice.kind == ToolChoice::Kind::Required && r.tools.empty())
      return bad_request("'tool_choice' \"required\" needs 'tools'", "tool_choice");
  }
  if (auto it = j.find("parallel_tool_calls"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return bad_request("'parallel_tool_calls' must be a boolean", "parallel_tool_calls");
    r.parallel_tool_calls = it->get<bool>();
  }
  return std::nullopt;
}

// The conversation as a template receives it, for conversations with tool calls or results.
std::optional<ApiError> read_conversation(const ojson& messages, ChatRequest& r) {
  ojson out = ojson::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ojson& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    ojson msg = {{"role", r.messages[i].role}, {"content", r.messages[i].content}};
    if (auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
      if (r.messages[i].role != "assistant" || !calls->is_array())
        return bad_request(where + ".tool_calls must be an array on an assistant message", where + ".tool_calls");
      ojson list = ojson::array();
      for (size_t k = 0; k < calls->size(); ++k) {
        const ojson& c = (*calls)[k];
        const std::string cw = where + ".tool_calls[" + std::to_string(k) + "]";
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object() || !c["function"].contains("name") ||
            !c["function"]["name"].is_string())
          return bad_request(cw + " must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", cw);
        ojson arguments = ojson::object();
        if (auto a = c["function"].find("arguments"); a != c["function"].end() && !a->is_null()) {
          if (a->is_string()) {
            // Templates expect the arguments as a mapping (they iterate or tojson them).
            ojson parsed = ojson::parse(a->get<std::string>(), nullptr, false);
            if (parsed.is_discarded() || json_nesting_depth(a->get<std::string>(), kMaxJsonDepth) > kMaxJsonDepth)
              return bad_request(cw + ".function.arguments must be a JSON text", cw + ".function.arguments");
            arguments = std::move(parsed);
          } else if (a->is_object()) {
            arguments = *a;  // as Ollama sends them
          } else {
            return bad_request(cw + ".function.arguments must be a string or an object", cw + ".function.arguments");
          }
        }
        ojson call = {{"type", "function"},
                      {"function", {{"name", c["function"]["name"]}, {"arguments", std::move(arguments)}}}};
        if (auto id = c.find("id"); id != c.end() && id->is_string()) call["id"] = *id;
        list.push_back(std::move(call));
      }
      msg["tool_calls"] = std::move(list);
      if (r.messages[i].content.empty() && (!m.contains("content") || m["content"].is_null())) msg["content"] = nullptr;
    }
    if (r.messages[i].role == "tool") {
      if (auto id = m.find("tool_call_id"); id != m.end() && !id->is_null()) {
        if (!id->is_string()) return bad_request(where + ".tool_call_id must be a string", where + ".tool_call_id");
        msg["tool_call_id"] = *id;
      }
    }
    if (auto name = m.find("name"); name != m.end() && name->is_string()) msg["name"] = *name;
    out.push_back(std::move(msg));
  }
  r.conversation = std::move(out);
  return std::nullopt;
}

// A token array's ids: non-negative integers (the server checks them against the vocabulary).
ApiResult<std::vector<int32_t>> read_token_ids(const json& array, const std::string& where) {
  if (array.empty()) return bad_request("'" + where + "' is an empty token array", where);
  std::vector<int32_t> ids;
  ids.reserve(array.size());
  for (const json& t : array) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max())
      return bad_request("'" + where + "' must hold token ids (non-negative integers), not " + t.dump(), where);
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

// "prompt" (or embeddings' "input") in each of OpenAI's four shapes, at most `max` of them.
ApiResult<std::vector<CompletionPrompt>> read_prompts(const json& prompt, const std::string& field, size_t max) {
  const char* expected = "a string, an array of strings, an array of token ids or an array of token arrays";
  std::vector<CompletionPrompt> out;
  if (prompt.is_string()) {
    out.emplace_back(prompt.get<std::string>());
    return out;
  }
  if (!prompt.is_array()) return wrong_type(field, expected, prompt);
  if (prompt.empty()) return bad_request("'" + field + "' is an empty array", field);
  if (prompt[0].is_number()) {  // one prompt of token ids
    auto ids = read_token_ids(prompt, field);
    if (!ids) return ids.error();
    out.emplace_back(std::move(*ids));
    return out;
  }
  if (prompt.size() > max)
    return bad_request("'" + field + "' holds " + std::to_string(prompt.size()) + " inputs; at most " +
                           std::to_string(max) + " are allowed",
                       field);
  for (size_t i = 0; i < prompt.size(); ++i) {
    const json& p = prompt[i];
    const std::string where = field + "[" + std::to_string(i) + "]";
    if (p.is_string()) {
      out.emplace_back(p.get<std::string>());
    } else if (p.is_array()) {
      auto ids = read_token_ids(p, where);
      if (!ids) return ids.error();
      out.emplace_back(std::move(*ids));
    } else {
      return wrong_type(where, "a string or an array of token ids", p);
    }
  }
  return out;
}

}  // namespace

ApiResult<json> parse_json_object(std::string_view body) {
  if (body.empty()) return bad_request("the request body is empty; send a JSON object", std::nullopt, "invalid_json");
  if (json_nesting_depth(body, kMaxJsonDepth) > kMaxJsonDepth)
    return bad_request("the request body nests arrays/objects deeper than " + std::to_string(kMaxJsonDepth) +
                           " levels",
                       std::nullopt, "invalid_json");
  json parsed;
  // The key last read, so that a number the parser rejects (1e400 overflows a double) is reported
  // against the field that holds it.
  std::string last_key;
  const json::parser_callback_t track_keys = [&last_key](int, json::parse_event_t event, json& value) {
    if (event == json::parse_event_t::key && value.is_string()) last_key = value.get<std::string>();
    return true;
  };
  try {
    parsed = json::parse(body, track_keys);
  } catch (const json::parse_error& e) {
    // nlohmann's message names the byte offset and what was expected there.
    return bad_request(std::string("the request body is not valid JSON: ") + e.what(), std::nullopt, "invalid_json");
  } catch (const json::out_of_range& e) {
    // A number beyond a double's range: valid JSON, but no value the API could accept.
    if (last_key.empty()) return bad_request(std::string("the request body holds a number out of range: ") + e.what());
    return bad_request("'" + last_key + "' holds a number out of range: " + e.what(), last_key);
  } catch (const json::exception& e) {
    return bad_request(std::string("the request body could not be parsed: ") + e.what(), std::nullopt, "invalid_json");
  }
  if (!parsed.is_object()) return bad_request("the request body must be a JSON object, not " + type_name(parsed));
  return parsed;
}

int json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

ApiResult<ChatRequest> parse_chat_request(std::string_view body) {
  auto object = parse_json_object(body);
  if (!object) return object.error();
  const json& j = *object;
  ChatRequest r;
  auto model = read_model(j);
  if (!model) return model.error();
  r.model = std::move(*model);
  auto messages = j.find("messages");
  if (messages == j.end() || messages->is_null()) return bad_request("'messages' is required", "messages");
  if (!messages->is_array()) return wrong_type("messages", "an array", *messages);
  if (messages->empty()) return bad_request("'messages' must hold at least one message", "messages");
  if (messages->size() > kMaxMessages)
    return bad_request("'messages' holds more than " + std::to_string(kMaxMessages) + " messages", "messages");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return wrong_type(where, "an object", m);
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) return bad_request(where + ".role must be a string", where + ".role");
    std::string role_name = role->get<std::string>();
    if (role_name == "developer") role_name = "system";  // OpenAI's newer name for the system role
    if (role_name != "system" && role_name != "user" && role_name != "assistant" && role_name != "tool")
      return bad_request(where + ".role '" + role_name + "' is not supported (system, user, assistant, tool)",
                         where + ".role");
    // An assistant turn that only calls tools may have no content.
    const bool calls = role_name == "assistant" && m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (calls && (!m.contains("content") || m["content"].is_null())) {
      r.messages.push_back({std::move(role_name), ""});
      continue;
    }
    auto content = read_content(m, where);
    if (!content) return content.error();
    r.messages.push_back({std::move(role_name), std::move(*content)});
  }
  auto params = read_params(j);
  if (!params) return params.error();
  r.params = std::move(*params);
  bool logprobs = false;
  std::optional<int64_t> top;
  if (auto e = read_bool(j, "logprobs", logprobs)) return *e;
  if (auto e = read_int(j, "top_logprobs", 0, 20, top)) return *e;
  if (top && !logprobs) return bad_request("'top_logprobs' needs \"logprobs\": true", "top_logprobs");
  if (logprobs) r.params.logprobs = static_cast<int>(top.value_or(0));

  // Tools and output formats keep the client's key order (a schema's properties are generated in
  // it), so they are read from an order-preserving parse; the body parsed once already.
  const bool has_tool_messages = std::any_of(messages->begin(), messages->end(), [](const json& m) {
    return (m.contains("tool_calls") && !m["tool_calls"].is_null()) || m.value("role", "") == "tool";
  });
  if (j.contains("tools") || j.contains("tool_choice") || j.contains("response_format") || has_tool_messages ||
      j.contains("parallel_tool_calls")) {
    const ojson ordered = ojson::parse(body, nullptr, false);
    auto format = read_response_format(ordered);
    if (!format) return format.error();
    r.params.response_format = std::move(*format);
    if (auto e = read_tools(ordered, r)) return *e;
    if (has_tool_messages)
      if (auto e = read_conversation(ordered["messages"], r)) return *e;
  }
  return r;
}

ApiResult<CompletionRequest> parse_completion_request(std::string_view body) {
  auto object = parse_json_object(body);
  if (!object) return object.error();
  const json& j = *object;
  CompletionRequest r;
  auto model = read_model(j);
  if (!model) return model.error();
  r.model = std::move(*model);
  auto prompt = j.find("prompt");
  if (prompt == j.end() || prompt->is_null()) return bad_request("'prompt' is required", "prompt");
  auto prompts = read_prompts(*prompt, "prompt", kMaxPrompts);
  if (!prompts) return prompts.error();
  r.prompts = std::move(*prompts);
  if (auto it = j.find("echo"); it != j.end() && it->is_boolean() && it->get<bool>())
    return bad_request("'echo' is not supported", "echo");
  if (auto it = j.find("suffix"); it != j.end() && !it->is_null())
    return bad_request("'suffix' is not supported", "suffix");
  std::optional<int64_t> best_of;
  if (auto e = read_int(j, "best_of", 1, 128, best_of)) return *e;
  if (best_of && *best_of != 1) return bad_request("only best_of = 1 is supported", "best_of");
  auto params = read_params(j);
  if (!params) return params.error();
  r.params = std::move(*params);
  if (r.prompts.size() * static_cast<size_t>(r.params.n) > kMaxChoicesPerRequest)
    return bad_request(std::to_string(r.prompts.size()) + " prompts with n = " + std::to_string(r.params.n) +
                           " make more than " + std::to_string(kMaxChoicesPerRequest) + " choices",
                       "n");
  std::optional<int64_t> logprobs;  // the legacy API: how many alternatives, 0 for the token's own only
  if (auto e = read_int(j, "logprobs", 0, 5, logprobs)) return *e;
  if (logprobs) r.params.logprobs = static_cast<int>(*logprobs);
  return r;
}

ApiResult<EmbeddingRequest> parse_embedding_request(std::string_view body) {
  auto object = parse_json_object(body);
  if (!object) return object.error();
  const json& j = *object;
  EmbeddingRequest r;
  auto model = read_model(j);
  if (!model) return model.error();
  r.model = std::move(*model);
  auto input = j.find("input");
  if (input == j.end() || input->is_null()) return bad_request("'input' is required", "input");
  auto inputs = read_prompts(*input, "input", kMaxEmbeddingInputs);
  if (!inputs) return inputs.error();
  r.inputs = std::move(*inputs);
  for (size_t i = 0; i < r.inputs.size(); ++i)
    if (const auto* text = std::get_if<std::string>(&r.inputs[i]); text && text->empty())
      return bad_request("an input is an empty string", r.inputs.size() == 1 ? "input" : "input[" + std::to_string(i) + "]");
  if (auto it = j.find("encoding_format"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return wrong_type("encoding_format", "\"float\" or \"base64\"", *it);
    const auto format = it->get<std::string>();
    if (format != "float" && format != "base64")
      return bad_request("'encoding_format' must be \"float\" or \"base64\", not \"" + format + "\"",
                         "encoding_format");
    r.base64 = format == "base64";
  }
  std::optional<int64_t> dimensions;
  if (auto e = read_int(j, "dimensions", 1, 1 << 20, dimensions)) return *e;
  r.dimensions = dimensions;
  return r;
}

}  // namespace omni::gateway
