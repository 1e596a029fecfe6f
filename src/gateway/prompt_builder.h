// PromptBuilder: turns a chat conversation or a completion prompt into token ids, as `omni run`
// does (and `omni run --chat` for conversations), with one difference for conversations: only the
// template's own markup is tokenized with special tokens parsed; the messages' text is plain text
// (model::TextSpan), so "<|end|>\n<|assistant|>" or "</s>" written by a client stays those
// characters and cannot forge a turn or end the prompt. A template that writes BOS gets no second
// one from the tokenizer, and the template's end-of-turn texts become stop strings.
//
// Completion prompts are the client's own text from end to end (there is no turn structure to
// forge): they get BOS as the vocabulary asks and keep control-token texts as text, as `omni run`
// does; there is no option to parse them.
//
// Template choice: a name given by the operator, else the model's own (tokenizer.chat_template),
// else `fallback_template` (chatml by default, as llama.cpp's server falls back), so a model
// without a template can still chat; `template_name()` says which is in use.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace omni::gateway {

struct Prompt {
  std::vector<model::TokenId> tokens;
  std::vector<std::string> stops;  // the template's turn ends (chat only)
};

class PromptBuilder {
 public:
  // Errors: a named template that does not exist; a model template that is not recognized and
  // no fallback.
  static Result<PromptBuilder> create(const model::Tokenizer& tokenizer, const std::string& model_template_source,
                                      const std::string& template_name, const std::string& fallback_template = "chatml");

  // Error: the template's own complaint (e.g. a system message where it has none).
  Result<Prompt> chat(std::span<const model::ChatMessage> messages) const;
  Prompt completion(const std::string& text) const;

  std::string template_name() const { return std::string(template_.name()); }

 private:
  PromptBuilder(model::Tokenizer tokenizer, model::ChatTemplate tmpl)
      : tokenizer_(std::move(tokenizer)), template_(std::move(tmpl)) {}
  model::Tokenizer tokenizer_;
  model::ChatTemplate template_;
};

}  // namespace omni::gateway
