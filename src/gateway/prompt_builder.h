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
// Template choice: a built-in format named by the operator, else the model's own Jinja template
// (tokenizer.chat_template, rendered as transformers renders it: model::PromptTemplate), else
// `fallback_template` (chatml by default, as llama.cpp's server falls back), so a model without a
// template, or with one that does not parse, can still chat; `template_name()` says which is in use ("jinja" for the model's own).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/prompt_template.h"
#include "model/tokenizer.h"

namespace omni::gateway {

struct Prompt {
  std::vector<model::TokenId> tokens;
  std::vector<std::string> stops;  // the template's turn ends (chat only)
  bool over_budget = false;        // more tokens than the budget: `tokens` holds none or a prefix
};

class PromptBuilder {
 public:
  // Errors: a named template that does not exist; a model template that does not parse and no
  // fallback.
  static Result<PromptBuilder> create(const model::Tokenizer& tokenizer, const std::string& model_template_source,
                                      const std::string& template_name, const std::string& fallback_template = "chatml");

  // `budget`: the most tokens the caller can use. A prompt over it is told by over_budget, found
  // without tokenizing it when its size in bytes proves it (more than budget *
  // Tokenizer::max_token_bytes()), else by tokenizing no further than the budget: a prompt far too
  // long for the context costs neither the time nor the memory of its whole tokenization.
  // Error: the template's own complaint (e.g. a system message where it has none).
  Result<Prompt> chat(std::span<const model::ChatMessage> messages, size_t budget = SIZE_MAX) const;
  // A conversation with tools, tool calls or tool results, as the template receives them
  // (model::ChatInput); a built-in format refuses what it cannot render.
  Result<Prompt> chat(const model::ChatInput& input, size_t budget = SIZE_MAX) const;
  Prompt completion(const std::string& text, size_t budget = SIZE_MAX) const;

  std::string template_name() const { return template_.name(); }

 private:
  PromptBuilder(model::Tokenizer tokenizer, model::PromptTemplate tmpl)
      : tokenizer_(std::move(tokenizer)), template_(std::move(tmpl)) {}
  Result<Prompt> tokenize(const model::ChatPrompt& rendered, size_t budget) const;
  // Whether `bytes` of text hold more than `budget` tokens whatever they say.
  bool too_long(size_t bytes, size_t budget) const;
  model::Tokenizer tokenizer_;
  model::PromptTemplate template_;
};

}  // namespace omni::gateway
