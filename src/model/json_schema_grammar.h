// JsonSchemaGrammar: compiles a JSON Schema to grammar rules (grammar.h) whose sentences are JSON
// texts valid against the schema, for constrained generation (response_format, tool arguments).
//
// Supported: type (one or a list: object, array, string, number, integer, boolean, null);
// properties, required, additionalProperties; items, minItems, maxItems; minLength, maxLength;
// enum, const; anyOf; oneOf whose branches differ in JSON type (so at most one can match); allOf
// with one member; $ref to "#" or a JSON pointer inside the same document ($defs, definitions);
// annotations (title, description, default, examples, format, $schema, $id, $comment, ...) are
// ignored, as validators ignore them by default. Any other keyword (pattern, minimum, multipleOf,
// not, prefixItems, ...) is refused with an Error naming it and where it is: what is generated
// is always valid, so what cannot be enforced is not accepted.
//
// What is generated is a subset of what the schema admits, in a canonical shape: properties in
// the schema's order (required ones always, optional ones maybe), no properties beyond the listed
// ones when properties are listed, numbers of at most 16 integer and 15 fraction digits, at most
// 12 bytes of whitespace between tokens, no whitespace around the whole value.
//
// Errors: InvalidArgument for an unsupported or malformed keyword, a $ref that does not resolve,
// a schema admitting nothing (false, an empty enum, recursion that never ends);
// ResourceExhausted for nesting deeper than max_depth or a grammar over its symbol limit.
#pragma once

#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "model/grammar.h"

namespace omni::model {

class JsonSchemaGrammar {
 public:
  using RuleId = GrammarBuilder::RuleId;

  // Adds rules to `builder`, which must outlive this.
  explicit JsonSchemaGrammar(GrammarBuilder& builder, int max_depth = 32) : b_(builder), max_depth_(max_depth) {}

  // A rule for the values `schema` admits; `schema` is also the document its $refs point into.
  Result<RuleId> schema(const nlohmann::ordered_json& schema);
  RuleId any_value();
  RuleId any_object();
  RuleId whitespace();  // 0-12 bytes of JSON whitespace
  // The JSON text of `value` (compact), as a sequence.
  GrammarBuilder::Sequence literal_json(const nlohmann::ordered_json& value);

 private:
  Result<RuleId> compile(const nlohmann::ordered_json& s, const std::string& path, int depth);
  Result<RuleId> compile_typed(const nlohmann::ordered_json& s, const std::string& type, const std::string& path,
                               int depth);
  Result<RuleId> object(const nlohmann::ordered_json& s, const std::string& path, int depth);
  Result<RuleId> array(const nlohmann::ordered_json& s, const std::string& path, int depth);
  Result<RuleId> string(const nlohmann::ordered_json& s, const std::string& path);
  Result<RuleId> reference(const std::string& ref, const std::string& path, int depth);
  RuleId string_char();
  RuleId any_string();
  RuleId number();
  RuleId integer();
  RuleId any_array();

  GrammarBuilder& b_;
  const int max_depth_;
  const nlohmann::ordered_json* root_ = nullptr;
  std::map<std::string, RuleId> refs_;
  std::optional<RuleId> ws_, char_, string_, number_, integer_, value_, object_, array_;
};

// A whole grammar: the JSON texts `schema` admits. Errors as above.
Result<Grammar> json_schema_grammar(const nlohmann::ordered_json& schema, const GrammarLimits& limits = {});
// Any JSON object (response_format json_object, Ollama's "format": "json").
Result<Grammar> json_object_grammar(const GrammarLimits& limits = {});

}  // namespace omni::model
