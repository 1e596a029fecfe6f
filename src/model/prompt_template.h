// PromptTemplate: how a model's chat prompts are rendered. A model's own Jinja template
// (tokenizer.chat_template, or a named one such as tokenizer.chat_template.tool_use) is rendered by
// JinjaChatTemplate, as transformers renders it; the pattern-based formats of ChatTemplate remain
// only for a format named by the operator (--chat-template NAME) and for files that carry no
// template at all.
//
// Stop strings: the EOS text, and the markup a template writes right after an assistant's message
// (found by rendering a probe conversation), which ends the turn in that family ("<|im_end|>",
// "<|eot_id|>", "<end_of_turn>", "<|end|>"...).
#pragma once

#include <ctime>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "gguf/value.h"
#include "model/chat_template.h"
#include "model/jinja_chat_template.h"

namespace omni::model {

class PromptTemplate {
 public:
  // The model's Jinja template. Error: it does not parse (InvalidArgument, with line and column).
  static Result<PromptTemplate> jinja(std::string_view source, std::string bos, std::string eos);
  // A pattern-based format by name (ChatTemplate::by_name). Error: no such format (NotFound).
  static Result<PromptTemplate> builtin(std::string_view name, std::string bos, std::string eos);

  // `input.tools` and `input.extra` are for Jinja templates; a built-in format takes the messages'
  // role and content only (an Error for other roles and for tools).
  Result<ChatPrompt> render(const ChatInput& input, std::time_t now) const;
  Result<ChatPrompt> render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // Whether `prompt` (rendered by this template) already starts with the BOS text, so that the
  // tokenizer must not add another.
  bool writes_bos(const ChatPrompt& prompt) const;
  const std::vector<std::string>& stop_strings() const { return stops_; }
  // "jinja" for a model's template, else the built-in format's name.
  std::string name() const;

 private:
  PromptTemplate() = default;
  std::optional<JinjaChatTemplate> jinja_;
  std::optional<ChatTemplate> builtin_;
  std::string bos_;
  std::vector<std::string> stops_;
};

// The Jinja source a model's metadata holds for `name` ("" or "default": tokenizer.chat_template;
// else tokenizer.chat_template.<name>), or nullopt.
std::optional<std::string> model_chat_template(const gguf::Metadata& metadata, std::string_view name = "");

}  // namespace omni::model
