// ChatTemplate: turns a conversation into the prompt text a chat model was trained on, for model
// files that carry no template of their own (by_name: `--chat-template NAME`). A file's own
// template (tokenizer.chat_template) is run by the Jinja interpreter (jinja_chat_template.h,
// chosen in prompt_template.h); this class is the built-in fallback.
//
// This is not a Jinja engine: detect() recognizes the template's family by its distinctive markers (as llama.cpp does)
// and renders it with code that produces exactly what the family's published template produces
// under transformers' apply_chat_template (trim_blocks, lstrip_blocks), byte for byte, including
// its errors for conversations the template rejects. The formats and their reference templates:
//
//   chatml             teknium/OpenHermes-2.5, Qwen2/Qwen2.5-Instruct (the template's default
//                      system prompt, if it has one, is used when the conversation has none)
//   llama2             meta-llama/Llama-2-7b-chat-hf
//   llama3             meta-llama/Meta-Llama-3-8B-Instruct
//   llama3.1           meta-llama/Llama-3.1-8B-Instruct, 3.2, 3.3 (no tools): the date line is
//                      "26 Jul 2024", or today's date where the template asks for strftime_now
//   mistral            mistralai/Mistral-7B-Instruct-v0.1/v0.2 (no system role; v0.1's first
//                      template puts a space after each EOS)
//   mistral-v1         Mistral's "v1" template (system prompt in the first [INST])
//   mistral-v3         Mistral-7B-Instruct-v0.3, Mistral-Large-2407 (system in the last [INST])
//   mistral-v3-tekken  Mistral-Nemo-Instruct-2407
//   phi3               microsoft/Phi-3-mini-4k-instruct (current), Phi-3-small, Phi-3.5-mini
//   phi3-legacy        the first Phi-3-mini/medium template: no system role, and every user turn
//                      opens the assistant's turn whatever add_generation_prompt says
//   gemma              google/gemma-7b-it, gemma-2 (no system role)
//   gemma3             google/gemma-3 (system text prefixed to the first user turn)
//   zephyr             HuggingFaceH4/zephyr-7b-beta, TinyLlama-1.1B-Chat
//
// A template recognized as one of these but differing from its reference in ways not listed
// above is rendered as the reference would render it. Tool calls, and roles other than system,
// user and assistant, are not supported.
//
// BOS: where a template writes bos_token (renders_bos()), the prompt already holds the BOS text;
// tokenize it with special tokens parsed and without adding another BOS.
//
// Messages are data, not markup: render() keeps the template's own text and the messages' text in
// separate segments, so that a tokenizer parses special tokens in the first only (a user who writes
// "<|end|>\n<|assistant|>" gets those characters, not a forged turn). Roles are the template's.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace omni::model {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// A stretch of a rendered prompt: the template's own text, or text taken from a message.
struct ChatSegment {
  std::string text;
  bool from_message = false;
};

struct ChatPrompt {
  std::vector<ChatSegment> segments;  // none empty; neighbours differ in from_message
  std::string text() const;           // the segments joined: apply()'s result
};

class ChatTemplate {
 public:
  // Recognizes `jinja_source` (the model's tokenizer.chat_template). `bos_token` and `eos_token`
  // are the texts of the model's BOS and EOS tokens, as the template's bos_token/eos_token. An
  // unrecognized template is an Error that quotes its start.
  static Result<ChatTemplate> detect(std::string_view jinja_source, std::string_view bos_token,
                                     std::string_view eos_token);
  // The reference template of a format by its name (the list above), for models without one.
  static Result<ChatTemplate> by_name(std::string_view name, std::string_view bos_token,
                                      std::string_view eos_token);

  // The prompt for `messages`, followed by the opening of the assistant's turn if
  // add_generation_prompt (for formats whose template honours it). An Error carries the
  // template's own complaint (a system message where it has no system role, roles that do not
  // alternate user/assistant where it requires that), or names an unsupported role.
  Result<std::string> apply(std::span<const ChatMessage> messages,
                            bool add_generation_prompt) const;
  // The same prompt, its template text and message text apart (see above).
  Result<ChatPrompt> render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  std::string_view name() const;
  // Texts that end the assistant's turn in this format (and the EOS text): stop generating there.
  std::vector<std::string> stop_strings() const;
  // Whether apply() writes the BOS text itself (see above).
  bool renders_bos() const { return !bos_.empty(); }

 private:
  enum class Format {
    ChatML,
    Llama2,
    Llama3,
    Llama31,
    Mistral,
    MistralV1,
    MistralV3,
    MistralV3Tekken,
    Phi3,
    Phi3Legacy,
    Gemma,
    Gemma3,
    Zephyr,
  };

  ChatTemplate(Format format, std::string bos, std::string eos)
      : format_(format), bos_(std::move(bos)), eos_(std::move(eos)) {}

  Format format_;
  std::string bos_;  // empty when the template does not write BOS
  std::string eos_;
  std::string default_system_;        // chatml: used when the first message is not a system one
  bool assistant_eos_space_ = false;  // mistral: a space follows each assistant turn's EOS
  bool skip_empty_system_ = false;    // phi3: an empty system message is left out
  bool eos_without_prompt_ = false;   // phi3: EOS ends the text when there is no generation prompt
  bool today_ = false;                // llama3.1: the date line is today's date
  bool always_prompt_ = false;        // llama3: the first template ignores add_generation_prompt
};

}  // namespace omni::model
