// JinjaChatTemplate: a model's own chat template (tokenizer.chat_template, Jinja source) rendered as
// transformers' apply_chat_template renders it (JinjaTemplate), so that any family's prompt is
// the one the model was trained on, tools and tool results included, byte for byte.
//
// The conversation is JSON as OpenAI-style clients send it (role, content, tool_calls, tool_call_id,
// name...), given to the template as `messages`; `tools` (null when none), `documents` (null),
// `add_generation_prompt`, `bos_token`, `eos_token` (when the model has them) and any extra
// variables (e.g. enable_thinking) are its other inputs, as transformers passes them.
//
// Messages are data, not markup: every string taken from the conversation, the tools or the extra
// variables is marked as data, and the marks follow it through the template (jinja::Text), so the
// ChatPrompt's from_message segments hold exactly the text that came from the caller, however the
// template cut or joined it; a tokenizer parses special tokens in the other segments only. Bytes a
// template computed from data (upper-casing, json escaping) count as data too.
//
// Errors: InvalidArgument for a template that does not parse, or for the template's own complaint
// about a conversation (raise_exception's message, e.g. roles that do not alternate) or its failure
// on it (a value it needs is missing); ResourceExhausted when a render passes JinjaLimits.
#pragma once

#include <ctime>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "model/chat_template.h"
#include "model/jinja_template.h"

namespace omni::model {

struct ChatInput {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;                                        // null, or a list of tools
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more template variables
  bool add_generation_prompt = true;
};

class JinjaChatTemplate {
 public:
  // `bos_token`/`eos_token`: the texts of the model's BOS and EOS tokens, empty where it has none.
  static Result<JinjaChatTemplate> parse(std::string_view source, std::string bos_token, std::string eos_token,
                                         const JinjaLimits& limits = {});

  // `now`: the time strftime_now() formats.
  Result<ChatPrompt> render(const ChatInput& input, std::time_t now) const;
  // Plain role/content messages, rendered now.
  Result<ChatPrompt> render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  JinjaChatTemplate(JinjaTemplate t, std::string bos, std::string eos)
      : template_(std::move(t)), bos_(std::move(bos)), eos_(std::move(eos)) {}
  JinjaTemplate template_;
  std::string bos_, eos_;
};

// A JSON value as a template value, every string in it marked as data.
jinja::Value jinja_data(const nlohmann::ordered_json& j);

}  // namespace omni::model
