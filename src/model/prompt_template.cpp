#include "model/prompt_template.h"

#include <algorithm>

namespace omni::model {

namespace {

void add_stop(std::vector<std::string>& stops, std::string s) {
  if (!s.empty() && std::find(stops.begin(), stops.end(), s) == stops.end()) stops.push_back(std::move(s));
}

// The markup after an assistant's message, up to its first whitespace: the family's end of turn.
std::string end_of_turn(const JinjaChatTemplate& t) {
  const std::string reply = "omni-probe-reply";
  ChatInput probe;
  probe.messages = nlohmann::ordered_json::array(
      {{{"role", "user"}, {"content", "omni-probe-question"}}, {{"role", "assistant"}, {"content", reply}}});
  probe.add_generation_prompt = false;
  auto p = t.render(probe, 0);
  if (!p) return "";
  for (size_t i = 0; i + 1 < p->segments.size(); ++i) {
    const ChatSegment& s = p->segments[i];
    if (!s.from_message || s.text.find(reply) == std::string::npos) continue;
    const std::string& next = p->segments[i + 1].text;
    size_t b = next.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    size_t e = next.find_first_of(" \t\r\n", b);
    return next.substr(b, e == std::string::npos ? std::string::npos : e - b);
  }
  return "";
}

}  // namespace

Result<PromptTemplate> PromptTemplate::jinja(std::string_view source, std::string bos, std::string eos) {
  auto t = JinjaChatTemplate::parse(source, bos, eos);
  if (!t) return t.error();
  PromptTemplate p;
  p.bos_ = std::move(bos);
  add_stop(p.stops_, end_of_turn(*t));
  add_stop(p.stops_, eos);
  p.jinja_ = std::move(*t);
  return p;
}

Result<PromptTemplate> PromptTemplate::builtin(std::string_view name, std::string bos, std::string eos) {
  auto t = ChatTemplate::by_name(name, bos, eos);
  if (!t) return t.error();
  PromptTemplate p;
  p.bos_ = std::move(bos);
  p.stops_ = t->stop_strings();
  p.builtin_ = std::move(*t);
  return p;
}

Result<ChatPrompt> PromptTemplate::render(const ChatInput& input, std::time_t now) const {
  if (jinja_) return jinja_->render(input, now);
  if (!input.tools.is_null() && !input.tools.empty())
    return Error{ErrorCode::InvalidArgument, "the " + name() + " chat format does not take tools"};
  std::vector<ChatMessage> messages;
  for (const auto& m : input.messages) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      return Error{ErrorCode::InvalidArgument, "the " + name() + " chat format takes messages with a role and text content"};
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return render(messages, input.add_generation_prompt);
}

Result<ChatPrompt> PromptTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  if (jinja_) return jinja_->render(messages, add_generation_prompt);
  return builtin_->render(messages, add_generation_prompt);
}

bool PromptTemplate::writes_bos(const ChatPrompt& prompt) const {
  if (builtin_) return builtin_->renders_bos();
  return !bos_.empty() && !prompt.segments.empty() && !prompt.segments[0].from_message &&
         prompt.segments[0].text.compare(0, bos_.size(), bos_) == 0;
}

std::string PromptTemplate::name() const { return jinja_ ? "jinja" : std::string(builtin_->name()); }

std::optional<std::string> model_chat_template(const gguf::Metadata& metadata, std::string_view name) {
  std::string key = "tokenizer.chat_template";
  if (!name.empty() && name != "default") key += "." + std::string(name);
  const gguf::Value* v = metadata.find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return std::string(*v->as_string());
}

}  // namespace omni::model
