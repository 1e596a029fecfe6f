#include "model/jinja_chat_template.h"

namespace omni::model {

using jinja::Value;

Value jinja_data(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      return u > uint64_t(INT64_MAX) ? Value(double(u)) : Value(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(jinja::Text::data(j.get<std::string>()));
    case nlohmann::ordered_json::value_t::array: {
      jinja::List l;
      l.reserve(j.size());
      for (const auto& item : j) l.push_back(jinja_data(item));
      return Value(std::move(l));
    }
    case nlohmann::ordered_json::value_t::object: {
      jinja::Dict d;
      d.items.reserve(j.size());
      for (const auto& [k, v] : j.items()) d.set(k, jinja_data(v));
      return Value(std::move(d));
    }
    default: return Value::none();
  }
}

Result<JinjaChatTemplate> JinjaChatTemplate::parse(std::string_view source, std::string bos_token,
                                                   std::string eos_token, const JinjaLimits& limits) {
  auto t = JinjaTemplate::parse(source, limits);
  if (!t) return t.error();
  return JinjaChatTemplate(std::move(*t), std::move(bos_token), std::move(eos_token));
}

Result<ChatPrompt> JinjaChatTemplate::render(const ChatInput& input, std::time_t now) const {
  jinja::Dict globals;
  globals.set("messages", jinja_data(input.messages));
  globals.set("tools", jinja_data(input.tools));
  globals.set("documents", Value::none());
  globals.set("add_generation_prompt", Value(input.add_generation_prompt));
  if (!bos_.empty()) globals.set("bos_token", Value(bos_));
  if (!eos_.empty()) globals.set("eos_token", Value(eos_));
  if (input.extra.is_object())
    for (const auto& [k, v] : input.extra.items()) globals.set(k, jinja_data(v));
  auto text = template_.render(globals, now);
  if (!text) return text.error();
  ChatPrompt prompt;
  const jinja::Text& t = *text;
  for (size_t i = 0; i < t.bytes.size();) {
    bool data = t.is_data(i);
    size_t j = i + 1;
    while (j < t.bytes.size() && t.is_data(j) == data) ++j;
    prompt.segments.push_back(ChatSegment{t.bytes.substr(i, j - i), data});
    i = j;
  }
  return prompt;
}

Result<ChatPrompt> JinjaChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  ChatInput input;
  for (const ChatMessage& m : messages) input.messages.push_back({{"role", m.role}, {"content", m.content}});
  input.add_generation_prompt = add_generation_prompt;
  return render(input, std::time(nullptr));
}

}  // namespace omni::model
