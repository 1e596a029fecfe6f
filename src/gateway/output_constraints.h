// OutputConstraints: the grammars a model's requests ask for (response_format json_object or
// json_schema, Ollama's "format", tool_choice "required" or a named function), compiled once per
// distinct shape and shared, with their caches of token masks (model/token_constraint.h), by the
// requests that ask for the same. One per served model; thread-safe.
//
// The vocabulary's trie is built on the first constrained request. At most `max_grammars` grammars
// are kept (the least recently used goes), each with a bounded mask cache, so a client sending
// ever new schemas costs compile time (bounded by the compiler's limits), not memory.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "gateway/openai_request.h"
#include "gateway/tool_calls.h"
#include "model/token_constraint.h"

namespace omni::gateway {

class OutputConstraints {
 public:
  using Constraint = std::shared_ptr<const model::ConstrainedGrammar>;

  explicit OutputConstraints(model::Tokenizer tokenizer, size_t max_grammars = 16,
                             size_t mask_cache_bytes = 32u << 20);

  // The grammar for `format` (null for plain text). A schema the compiler refuses is a 400 naming
  // `param` and the keyword.
  ApiResult<Constraint> for_format(const ResponseFormat& format, const std::string& param);
  // The grammar of a forced call (null unless tool_choice is required or a named function).
  ApiResult<Constraint> for_tool_choice(const std::vector<ToolDefinition>& tools, const ToolChoice& choice,
                                        ToolCallFormat format);

 private:
  ApiResult<Constraint> cached(const std::string& key, const std::string& param,
                               const std::function<Result<model::Grammar>()>& compile);

  const model::Tokenizer tokenizer_;
  const size_t max_grammars_;
  const size_t mask_cache_bytes_;
  std::mutex mutex_;
  std::shared_ptr<const model::TokenVocabulary> vocabulary_;
  std::list<std::string> lru_;  // most recent first
  struct Entry {
    Constraint grammar;
    std::list<std::string>::iterator position;
  };
  std::unordered_map<std::string, Entry> grammars_;
};

}  // namespace omni::gateway
