#include "gateway/output_constraints.h"

#include "model/json_schema_grammar.h"

namespace omni::gateway {

OutputConstraints::OutputConstraints(model::Tokenizer tokenizer, size_t max_grammars, size_t mask_cache_bytes)
    : tokenizer_(std::move(tokenizer)), max_grammars_(std::max<size_t>(1, max_grammars)),
      mask_cache_bytes_(mask_cache_bytes) {}

ApiResult<OutputConstraints::Constraint> OutputConstraints::cached(
    const std::string& key, const std::string& param, const std::function<Result<model::Grammar>()>& compile) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = grammars_.find(key); it != grammars_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.position);
      return it->second.grammar;
    }
  }
  auto grammar = compile();  // outside the lock: other requests go on meanwhile
  if (!grammar) return bad_request(grammar.error().message, param, "invalid_schema");
  std::lock_guard lock(mutex_);
  if (!vocabulary_) vocabulary_ = std::make_shared<const model::TokenVocabulary>(tokenizer_);
  Constraint c = std::make_shared<const model::ConstrainedGrammar>(std::move(*grammar), vocabulary_, mask_cache_bytes_);
  if (grammars_.count(key)) return c;
  while (grammars_.size() >= max_grammars_) {
    grammars_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  grammars_.emplace(key, Entry{c, lru_.begin()});
  return c;
}

ApiResult<OutputConstraints::Constraint> OutputConstraints::for_format(const ResponseFormat& format,
                                                                       const std::string& param) {
  switch (format.kind) {
    case ResponseFormat::Kind::Text: return Constraint();
    case ResponseFormat::Kind::JsonObject:
      return cached("object", param, [] { return model::json_object_grammar(); });
    case ResponseFormat::Kind::JsonSchema:
      return cached("schema:" + format.schema.dump(), param, [&] { return model::json_schema_grammar(format.schema); });
  }
  return Constraint();
}

ApiResult<OutputConstraints::Constraint> OutputConstraints::for_tool_choice(const std::vector<ToolDefinition>& tools,
                                                                            const ToolChoice& choice,
                                                                            ToolCallFormat format) {
  if (choice.kind != ToolChoice::Kind::Required && choice.kind != ToolChoice::Kind::Function) return Constraint();
  std::string key = "tools:" + std::to_string(static_cast<int>(format)) + ":" + choice.name + ":";
  for (const ToolDefinition& t : tools) key += t.name + "=" + t.parameters.dump() + ";";
  return cached(key, "tools", [&] { return tool_call_grammar(tools, choice, format); });
}

}  // namespace omni::gateway
