#include "gateway/tool_calls.h"

#include <algorithm>
#include <random>

#include "model/json_schema_grammar.h"

namespace omni::gateway {
namespace {

using ojson = nlohmann::ordered_json;

constexpr std::string_view kOpeners[] = {"<tool_call>", "[TOOL_CALLS]", "<|python_tag|>"};
constexpr int kMaxCallDepth = 64;

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kChars[rng() % (sizeof kChars - 1)];
  return id;
}

std::optional<ojson> parse_json(std::string_view text) {
  if (json_nesting_depth(text, kMaxCallDepth) > kMaxCallDepth) return std::nullopt;
  ojson v = ojson::parse(text, nullptr, false);
  if (v.is_discarded()) return std::nullopt;
  return v;
}

// One call object ({"name", "arguments"|"parameters"}, or OpenAI's {"function": {...}}) naming one
// of `tools`.
std::optional<ToolCall> call_from(const ojson& v, const std::vector<ToolDefinition>& tools) {
  if (!v.is_object()) return std::nullopt;
  if (v.contains("function") && v["function"].is_object()) return call_from(v["function"], tools);
  auto name = v.find("name");
  if (name == v.end() || !name->is_string()) return std::nullopt;
  const std::string n = name->get<std::string>();
  if (std::none_of(tools.begin(), tools.end(), [&](const ToolDefinition& t) { return t.name == n; })) return std::nullopt;
  ToolCall c{call_id(), n, "{}"};
  auto args = v.find("arguments");
  if (args == v.end()) args = v.find("parameters");
  if (args != v.end()) {
    if (args->is_string()) {
      auto parsed = parse_json(args->get<std::string>());
      if (!parsed) return std::nullopt;
      c.arguments = parsed->dump();
    } else if (args->is_object()) {
      c.arguments = args->dump();
    } else {
      return std::nullopt;
    }
  }
  return c;
}

// Calls in a JSON value: one call, a list of calls, or {"tool_calls": [...]}.
std::vector<ToolCall> calls_from(const ojson& v, const std::vector<ToolDefinition>& tools) {
  const ojson* list = &v;
  if (v.is_object() && v.contains("tool_calls")) list = &v["tool_calls"];
  std::vector<ToolCall> out;
  if (list->is_array()) {
    for (const auto& item : *list) {
      auto c = call_from(item, tools);
      if (!c) return {};
      out.push_back(std::move(*c));
    }
  } else if (auto c = call_from(*list, tools)) {
    out.push_back(std::move(*c));
  }
  return out;
}

}  // namespace

ToolCallFormat tool_call_format(std::string_view source) {
  if (source.find("<tool_call>") != std::string_view::npos) return ToolCallFormat::Hermes;
  if (source.find("[TOOL_CALLS]") != std::string_view::npos) return ToolCallFormat::Mistral;
  if (source.find("<|python_tag|>") != std::string_view::npos || source.find("ipython") != std::string_view::npos)
    return ToolCallFormat::Llama3;
  return ToolCallFormat::Generic;
}

ParsedAnswer parse_tool_calls(std::string_view text, const std::vector<ToolDefinition>& tools) {
  ParsedAnswer none{std::string(text), {}};
  if (tools.empty()) return none;
  constexpr std::string_view open = "<tool_call>", close = "</tool_call>";
  if (const size_t first = text.find(open); first != std::string_view::npos) {
    ParsedAnswer out;
    out.content = std::string(trim(text.substr(0, first)));
    size_t at = first;
    while (at != std::string_view::npos) {
      const size_t body = at + open.size();
      const size_t end = text.find(close, body);
      auto v = parse_json(trim(text.substr(body, end == std::string_view::npos ? std::string_view::npos : end - body)));
      if (!v) return none;
      auto calls = calls_from(*v, tools);
      if (calls.empty()) return none;
      for (auto& c : calls) out.calls.push_back(std::move(c));
      if (end == std::string_view::npos) break;
      at = text.find(open, end + close.size());
      if (at == std::string_view::npos) {
        const std::string_view after = trim(text.substr(end + close.size()));
        if (!after.empty()) out.content += (out.content.empty() ? "" : "\n") + std::string(after);
      }
    }
    return out;
  }
  std::string_view t = trim(text);
  for (std::string_view prefix : kOpeners)
    if (t.substr(0, prefix.size()) == prefix) t = trim(t.substr(prefix.size()));
  auto v = parse_json(t);
  if (!v) return none;
  auto calls = calls_from(*v, tools);
  if (calls.empty()) return none;
  return {"", std::move(calls)};
}

Result<model::Grammar> tool_call_grammar(const std::vector<ToolDefinition>& tools, const ToolChoice& choice,
                                         ToolCallFormat format) {
  model::GrammarBuilder b;
  model::JsonSchemaGrammar schemas(b);
  const auto ws = model::GrammarBuilder::ref(schemas.whitespace());
  const auto colon = b.bytes(model::ByteSet::of(':')), comma = b.bytes(model::ByteSet::of(','));
  const std::string args_key = format == ToolCallFormat::Llama3 ? "\"parameters\"" : "\"arguments\"";
  const auto call = b.new_rule();
  size_t allowed = 0;
  for (const ToolDefinition& t : tools) {
    if (choice.kind == ToolChoice::Kind::Function && t.name != choice.name) continue;
    model::GrammarBuilder::RuleId args;
    if (t.parameters.is_null()) {
      args = schemas.any_object();
    } else {
      auto compiled = schemas.schema(t.parameters);
      if (!compiled) return compiled.error().with_context("the parameters of tool '" + t.name + "'");
      args = *compiled;
    }
    model::GrammarBuilder::Sequence seq = b.literal("{");
    auto append = [&seq](const model::GrammarBuilder::Sequence& more) { seq.insert(seq.end(), more.begin(), more.end()); };
    seq.push_back(ws);
    append(b.literal("\"name\""));
    append({ws, colon, ws});
    append(schemas.literal_json(t.name));
    append({ws, comma, ws});
    append(b.literal(args_key));
    append({ws, colon, ws, model::GrammarBuilder::ref(args), ws});
    append(b.literal("}"));
    b.add_alternative(call, std::move(seq));
    ++allowed;
  }
  if (allowed == 0) return Error{ErrorCode::InvalidArgument, "no tool to call"};
  const auto root = b.new_rule();
  switch (format) {
    case ToolCallFormat::Hermes: {
      auto seq = b.literal("<tool_call>\n");
      seq.push_back(model::GrammarBuilder::ref(call));
      auto tail = b.literal("\n</tool_call>");
      seq.insert(seq.end(), tail.begin(), tail.end());
      b.add_alternative(root, std::move(seq));
      break;
    }
    case ToolCallFormat::Mistral:
      b.add_alternative(root, {b.bytes(model::ByteSet::of('[')), model::GrammarBuilder::ref(call),
                               b.bytes(model::ByteSet::of(']'))});
      break;
    default:
      b.add_alternative(root, {model::GrammarBuilder::ref(call)});
  }
  return b.finish(root);
}

std::string ToolCallStream::feed(std::string_view text) {
  held_ += text;
  if (capturing_) return "";
  if (!started_) {
    const size_t p = held_.find_first_not_of(" \t\r\n");
    if (p == std::string::npos) return "";
    if (held_[p] == '{' || held_[p] == '[') {
      capturing_ = true;
      return "";
    }
    started_ = true;
  }
  size_t at = std::string::npos;
  for (std::string_view o : kOpeners) at = std::min(at, held_.find(o));
  if (at != std::string::npos) {
    std::string out = held_.substr(0, at);
    held_.erase(0, at);
    capturing_ = true;
    return out;
  }
  // Hold back a tail that may be the start of an opener.
  size_t hold = 0;
  for (std::string_view o : kOpeners)
    for (size_t len = std::min(o.size() - 1, held_.size()); len > hold; --len)
      if (std::string_view(held_).substr(held_.size() - len) == o.substr(0, len)) {
        hold = len;
        break;
      }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

ParsedAnswer ToolCallStream::finish(const std::vector<ToolDefinition>& tools) {
  ParsedAnswer a = parse_tool_calls(held_, tools);
  held_.clear();
  return a;
}

}  // namespace omni::gateway
