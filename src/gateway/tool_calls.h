// Tool calls in generated text: the families' formats, the grammar that forces a call, and the
// stream filter that keeps a call's text out of a streamed answer's content.
//
// Formats a model may write a call in (all are recognized, whatever the model):
//   Hermes / Qwen   <tool_call>{"name": "f", "arguments": {...}}</tool_call>, one block per call
//   Llama 3.x       {"name": "f", "parameters": {...}}, after <|python_tag|> or alone
//   Mistral         [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
//   generic         the whole answer a JSON object {"name", "arguments"}, an array of them, or
//                   {"tool_calls": [...]}
// A text is a tool call only when every call in it names one of the request's tools; otherwise it
// is content, as written.
//
// Forced calls (tool_choice "required" or a named function) are generated under a grammar: the
// family's wrapper (by the chat template: <tool_call> for Hermes-style templates, "parameters"
// for Llama 3's, a list for Mistral's, else the generic object), the name one of the allowed
// tools, the arguments valid against that tool's parameters schema (json_schema_grammar.h).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "gateway/openai_request.h"
#include "model/grammar.h"

namespace omni::gateway {

enum class ToolCallFormat { Hermes, Llama3, Mistral, Generic };

// The format a chat template writes calls in (from its source; Generic when it shows none).
ToolCallFormat tool_call_format(std::string_view template_source);

struct ToolCall {
  std::string id;         // "call_" and 24 random characters
  std::string name;
  std::string arguments;  // a JSON text, compact
};

struct ParsedAnswer {
  std::string content;  // the text that is not a call (all of it when there is none)
  std::vector<ToolCall> calls;
};

ParsedAnswer parse_tool_calls(std::string_view text, const std::vector<ToolDefinition>& tools);

// The grammar of one call to one of `tools` (the named one for ToolChoice::Function). Errors
// (InvalidArgument, ResourceExhausted): a tool's parameters schema the compiler refuses; the
// message names the tool.
Result<model::Grammar> tool_call_grammar(const std::vector<ToolDefinition>& tools, const ToolChoice& choice,
                                         ToolCallFormat format);

// Streams an answer that may hold tool calls: text goes out as it comes until something that may
// open a call appears (a call tag, or '{' or '[' opening the answer); from there it is held, and
// finish() tells whether it was calls or content.
class ToolCallStream {
 public:
  // The text now safe to send as content.
  std::string feed(std::string_view text);
  // At the end: the held text parsed (its content part is what is still to send).
  ParsedAnswer finish(const std::vector<ToolDefinition>& tools);

 private:
  std::string held_;
  bool capturing_ = false;
  bool started_ = false;  // some non-whitespace text went out
};

}  // namespace omni::gateway
