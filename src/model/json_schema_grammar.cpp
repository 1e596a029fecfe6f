#include "model/json_schema_grammar.h"

#include <algorithm>
#include <set>
#include <vector>

namespace omni::model {
namespace {

using json = nlohmann::ordered_json;
using Seq = GrammarBuilder::Sequence;

const std::set<std::string> kAnnotations = {"title",    "description", "default",    "examples", "format",
                                            "$schema",  "$id",         "$comment",   "deprecated", "readOnly",
                                            "writeOnly", "$defs",      "definitions", "$anchor"};
const std::set<std::string> kKeywords = {"type",     "properties", "required", "additionalProperties", "items",
                                         "minItems", "maxItems",   "minLength", "maxLength", "enum", "const",
                                         "anyOf",    "oneOf",      "allOf",    "$ref"};
const std::set<std::string> kTypes = {"object", "array", "string", "number", "integer", "boolean", "null"};

Error unsupported(const std::string& what, const std::string& path) {
  return Error{ErrorCode::InvalidArgument, what + " at " + path};
}

// A non-negative integer keyword's value, or nullopt when absent.
Result<std::optional<size_t>> count_keyword(const json& s, const char* key, const std::string& path) {
  auto it = s.find(key);
  if (it == s.end()) return std::optional<size_t>();
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
    return unsupported(std::string("'") + key + "' must be a non-negative integer", path);
  return std::optional<size_t>(it->get<size_t>());
}

// The JSON types a value of `s` may have (integer counted as number), for oneOf's disjointness.
std::set<std::string> type_set(const json& s, const json& root, int depth) {
  const std::set<std::string> all = {"object", "array", "string", "number", "boolean", "null"};
  if (depth > 32 || !s.is_object()) return all;
  auto norm = [](std::string t) { return t == "integer" ? std::string("number") : t; };
  auto of_value = [&](const json& v) -> std::string {
    if (v.is_object()) return "object";
    if (v.is_array()) return "array";
    if (v.is_string()) return "string";
    if (v.is_number()) return "number";
    if (v.is_boolean()) return "boolean";
    return "null";
  };
  if (auto c = s.find("const"); c != s.end()) return {of_value(*c)};
  if (auto e = s.find("enum"); e != s.end() && e->is_array()) {
    std::set<std::string> out;
    for (const auto& v : *e) out.insert(of_value(v));
    return out;
  }
  if (auto t = s.find("type"); t != s.end()) {
    if (t->is_string()) return {norm(t->get<std::string>())};
    if (t->is_array()) {
      std::set<std::string> out;
      for (const auto& v : *t)
        if (v.is_string()) out.insert(norm(v.get<std::string>()));
      return out;
    }
  }
  if (auto r = s.find("$ref"); r != s.end() && r->is_string()) {
    const std::string ref = r->get<std::string>();
    if (ref == "#") return type_set(root, root, depth + 1);
    if (ref.rfind("#/", 0) == 0) {
      try {
        return type_set(root.at(json::json_pointer(ref.substr(1))), root, depth + 1);
      } catch (const json::exception&) {
        return all;
      }
    }
  }
  return all;
}

}  // namespace

GrammarBuilder::Sequence JsonSchemaGrammar::literal_json(const json& value) { return b_.literal(value.dump()); }

JsonSchemaGrammar::RuleId JsonSchemaGrammar::whitespace() {
  if (!ws_) {
    ByteSet ws;
    ws.add(' ');
    ws.add('\t');
    ws.add('\n');
    ws_ = b_.repeat(b_.bytes(ws), 0, 12);
  }
  return *ws_;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::string_char() {
  if (char_) return *char_;
  const RuleId c = b_.new_rule();
  ByteSet plain;
  plain.add_range(0x20, 0x7f);
  plain.bits[0x22 >> 6] &= ~(uint64_t{1} << (0x22 & 63));  // '"'
  plain.bits[0x5c >> 6] &= ~(uint64_t{1} << (0x5c & 63));  // '\\'
  auto set = [&](uint8_t lo, uint8_t hi) { return b_.bytes(ByteSet::range(lo, hi)); };
  const auto cont = set(0x80, 0xbf);
  b_.add_alternative(c, {b_.bytes(plain)});
  // Well-formed UTF-8 only (no overlongs, no surrogates, nothing past U+10FFFF).
  b_.add_alternative(c, {set(0xc2, 0xdf), cont});
  b_.add_alternative(c, {set(0xe0, 0xe0), set(0xa0, 0xbf), cont});
  b_.add_alternative(c, {set(0xe1, 0xec), cont, cont});
  b_.add_alternative(c, {set(0xee, 0xef), cont, cont});
  b_.add_alternative(c, {set(0xed, 0xed), set(0x80, 0x9f), cont});
  b_.add_alternative(c, {set(0xf0, 0xf0), set(0x90, 0xbf), cont, cont});
  b_.add_alternative(c, {set(0xf1, 0xf3), cont, cont, cont});
  b_.add_alternative(c, {set(0xf4, 0xf4), set(0x80, 0x8f), cont, cont});
  ByteSet simple_escape;
  for (char e : std::string("\"\\/bfnrt")) simple_escape.add(static_cast<uint8_t>(e));
  b_.add_alternative(c, {b_.bytes(ByteSet::of('\\')), b_.bytes(simple_escape)});
  ByteSet hex, hex_no_d, d, low;
  hex.add_range('0', '9'), hex.add_range('a', 'f'), hex.add_range('A', 'F');
  hex_no_d.add_range('0', '9'), hex_no_d.add_range('a', 'c'), hex_no_d.add_range('A', 'C');
  hex_no_d.add_range('e', 'f'), hex_no_d.add_range('E', 'F');
  d.add('d'), d.add('D');
  low.add_range('0', '7');
  // \uXXXX outside the surrogates: a lone surrogate is not a character, and parsers refuse it.
  const auto bs = b_.bytes(ByteSet::of('\\')), u = b_.bytes(ByteSet::of('u')), h = b_.bytes(hex);
  b_.add_alternative(c, {bs, u, b_.bytes(hex_no_d), h, h, h});
  b_.add_alternative(c, {bs, u, b_.bytes(d), b_.bytes(low), h, h});
  char_ = c;
  return c;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::any_string() {
  if (!string_) {
    const RuleId r = b_.new_rule();
    const auto quote = b_.bytes(ByteSet::of('"'));
    b_.add_alternative(r, {quote, GrammarBuilder::ref(b_.repeat(GrammarBuilder::ref(string_char()), 0, -1)), quote});
    string_ = r;
  }
  return *string_;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::integer() {
  if (integer_) return *integer_;
  const RuleId r = b_.new_rule();
  const auto digit = b_.bytes(ByteSet::range('0', '9'));
  const auto minus = b_.bytes(ByteSet::of('-'));
  const RuleId digits = b_.repeat(digit, 0, 15);
  const auto zero = b_.bytes(ByteSet::of('0')), nonzero = b_.bytes(ByteSet::range('1', '9'));
  b_.add_alternative(r, {zero});
  b_.add_alternative(r, {nonzero, GrammarBuilder::ref(digits)});
  b_.add_alternative(r, {minus, zero});
  b_.add_alternative(r, {minus, nonzero, GrammarBuilder::ref(digits)});
  integer_ = r;
  return r;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::number() {
  if (number_) return *number_;
  const auto digit = b_.bytes(ByteSet::range('0', '9'));
  const RuleId frac = b_.new_rule();  // "" | "." digit{1,15}
  b_.add_alternative(frac, {});
  b_.add_alternative(frac, {b_.bytes(ByteSet::of('.')), GrammarBuilder::ref(b_.repeat(digit, 1, 15))});
  const RuleId exp = b_.new_rule();  // "" | [eE] [+-]? digit{1,2}: a double's range holds 1e99
  ByteSet e, sign;
  e.add('e'), e.add('E'), sign.add('+'), sign.add('-');
  const RuleId exp_digits = b_.repeat(digit, 1, 2);
  b_.add_alternative(exp, {});
  b_.add_alternative(exp, {b_.bytes(e), GrammarBuilder::ref(exp_digits)});
  b_.add_alternative(exp, {b_.bytes(e), b_.bytes(sign), GrammarBuilder::ref(exp_digits)});
  const RuleId r = b_.new_rule();
  b_.add_alternative(r, {GrammarBuilder::ref(integer()), GrammarBuilder::ref(frac), GrammarBuilder::ref(exp)});
  number_ = r;
  return r;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::any_value() {
  if (value_) return *value_;
  const RuleId v = b_.new_rule();
  value_ = v;  // before the parts, which refer back to it
  b_.add_alternative(v, {GrammarBuilder::ref(any_object())});
  b_.add_alternative(v, {GrammarBuilder::ref(any_array())});
  b_.add_alternative(v, {GrammarBuilder::ref(any_string())});
  b_.add_alternative(v, {GrammarBuilder::ref(number())});
  b_.add_alternative(v, b_.literal("true"));
  b_.add_alternative(v, b_.literal("false"));
  b_.add_alternative(v, b_.literal("null"));
  return v;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::any_object() {
  if (object_) return *object_;
  const RuleId o = b_.new_rule();
  object_ = o;
  const auto ws = GrammarBuilder::ref(whitespace());
  const RuleId member = b_.new_rule();  // string ws ':' ws value ws
  b_.add_alternative(member, {GrammarBuilder::ref(any_string()), ws, b_.bytes(ByteSet::of(':')), ws,
                              GrammarBuilder::ref(any_value()), ws});
  const RuleId more = b_.new_rule();  // ',' ws member
  b_.add_alternative(more, {b_.bytes(ByteSet::of(',')), ws, GrammarBuilder::ref(member)});
  const auto open = b_.bytes(ByteSet::of('{')), close = b_.bytes(ByteSet::of('}'));
  b_.add_alternative(o, {open, ws, close});
  b_.add_alternative(o, {open, ws, GrammarBuilder::ref(member),
                         GrammarBuilder::ref(b_.repeat(GrammarBuilder::ref(more), 0, -1)), close});
  return o;
}

JsonSchemaGrammar::RuleId JsonSchemaGrammar::any_array() {
  if (array_) return *array_;
  const RuleId a = b_.new_rule();
  array_ = a;
  const auto ws = GrammarBuilder::ref(whitespace());
  const RuleId item = b_.new_rule();
  b_.add_alternative(item, {GrammarBuilder::ref(any_value()), ws});
  const RuleId more = b_.new_rule();
  b_.add_alternative(more, {b_.bytes(ByteSet::of(',')), ws, GrammarBuilder::ref(item)});
  const auto open = b_.bytes(ByteSet::of('[')), close = b_.bytes(ByteSet::of(']'));
  b_.add_alternative(a, {open, ws, close});
  b_.add_alternative(a, {open, ws, GrammarBuilder::ref(item),
                         GrammarBuilder::ref(b_.repeat(GrammarBuilder::ref(more), 0, -1)), close});
  return a;
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::schema(const json& s) {
  root_ = &s;
  refs_.clear();
  return compile(s, "#", 0);
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::reference(const std::string& ref, const std::string& path,
                                                               int depth) {
  if (auto it = refs_.find(ref); it != refs_.end()) return it->second;
  if (ref != "#" && ref.rfind("#/", 0) != 0)
    return unsupported("'$ref' must point inside this schema (\"#\" or \"#/...\"), not '" + ref + "'", path);
  const json* target = root_;
  if (ref != "#") {
    try {
      target = &root_->at(json::json_pointer(ref.substr(1)));
    } catch (const json::exception&) {
      return unsupported("'$ref' '" + ref + "' does not resolve", path);
    }
  }
  // The rule exists before its body, so recursive schemas refer to it.
  const RuleId r = b_.new_rule();
  refs_[ref] = r;
  auto body = compile(*target, ref, depth + 1);
  if (!body) return body.error();
  b_.add_alternative(r, {GrammarBuilder::ref(*body)});
  return r;
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::compile(const json& s, const std::string& path, int depth) {
  if (depth > max_depth_)
    return Error{ErrorCode::ResourceExhausted,
                 "the schema nests deeper than " + std::to_string(max_depth_) + " levels at " + path};
  if (b_.size() > b_.limits().max_symbols)
    return Error{ErrorCode::ResourceExhausted, "the schema compiles to too large a grammar at " + path};
  if (s.is_boolean()) {
    if (s.get<bool>()) return any_value();
    return unsupported("the schema false admits no value", path);
  }
  if (!s.is_object()) return unsupported("a schema must be an object or a boolean", path);
  for (const auto& [key, value] : s.items()) {
    if (!kKeywords.count(key) && !kAnnotations.count(key))
      return unsupported("unsupported JSON Schema keyword '" + key + "'", path);
  }
  if (auto r = s.find("$ref"); r != s.end()) {
    if (!r->is_string()) return unsupported("'$ref' must be a string", path);
    for (const auto& [key, value] : s.items())
      if (key != "$ref" && !kAnnotations.count(key))
        return unsupported("keyword '" + key + "' beside '$ref' is not supported", path);
    return reference(r->get<std::string>(), path, depth);
  }
  if (auto c = s.find("const"); c != s.end()) {
    const RuleId r = b_.new_rule();
    b_.add_alternative(r, literal_json(*c));
    return r;
  }
  if (auto e = s.find("enum"); e != s.end()) {
    if (!e->is_array() || e->empty()) return unsupported("'enum' must be a non-empty array", path);
    const RuleId r = b_.new_rule();
    for (const auto& v : *e) b_.add_alternative(r, literal_json(v));
    return r;
  }
  auto alternatives = [&](const char* key) -> Result<RuleId> {
    const json& list = s.at(key);
    if (!list.is_array() || list.empty()) return unsupported(std::string("'") + key + "' must be a non-empty array", path);
    const RuleId r = b_.new_rule();
    for (size_t i = 0; i < list.size(); ++i) {
      auto branch = compile(list[i], path + "/" + key + "/" + std::to_string(i), depth + 1);
      if (!branch) return branch.error();
      b_.add_alternative(r, {GrammarBuilder::ref(*branch)});
    }
    return r;
  };
  if (s.contains("anyOf") || s.contains("oneOf") || s.contains("allOf")) {
    for (const auto& [key, value] : s.items())
      if (key != "anyOf" && key != "oneOf" && key != "allOf" && !kAnnotations.count(key))
        return unsupported("keyword '" + key + "' beside anyOf/oneOf/allOf is not supported", path);
    if (s.contains("anyOf") + s.contains("oneOf") + s.contains("allOf") > 1)
      return unsupported("only one of anyOf, oneOf, allOf may be given", path);
    if (s.contains("anyOf")) return alternatives("anyOf");
    if (s.contains("allOf")) {
      const json& list = s.at("allOf");
      if (!list.is_array() || list.size() != 1) return unsupported("'allOf' is supported with one member only", path);
      return compile(list[0], path + "/allOf/0", depth + 1);
    }
    const json& list = s.at("oneOf");
    if (list.is_array()) {
      std::set<std::string> seen;
      for (const auto& branch : list)
        for (const std::string& t : type_set(branch, *root_, 0))
          if (!seen.insert(t).second)
            return unsupported("'oneOf' branches must differ in JSON type (overlapping ones could both match)", path);
    }
    return alternatives("oneOf");
  }

  std::vector<std::string> types;
  if (auto t = s.find("type"); t != s.end()) {
    if (t->is_string()) types.push_back(t->get<std::string>());
    else if (t->is_array() && !t->empty())
      for (const auto& v : *t) {
        if (!v.is_string()) return unsupported("'type' must be a string or an array of strings", path);
        types.push_back(v.get<std::string>());
      }
    else return unsupported("'type' must be a string or an array of strings", path);
    for (const auto& type : types)
      if (!kTypes.count(type)) return unsupported("unknown type '" + type + "'", path);
  } else if (s.contains("properties") || s.contains("required") || s.contains("additionalProperties")) {
    types.push_back("object");
  } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
    types.push_back("array");
  } else if (s.contains("minLength") || s.contains("maxLength")) {
    types.push_back("string");
  } else {
    return any_value();
  }
  if (types.size() == 1) return compile_typed(s, types[0], path, depth);
  const RuleId r = b_.new_rule();
  for (const auto& type : types) {
    auto one = compile_typed(s, type, path, depth);
    if (!one) return one.error();
    b_.add_alternative(r, {GrammarBuilder::ref(*one)});
  }
  return r;
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::compile_typed(const json& s, const std::string& type,
                                                                   const std::string& path, int depth) {
  if (type == "object") return object(s, path, depth);
  if (type == "array") return array(s, path, depth);
  if (type == "string") return string(s, path);
  if (type == "number") return number();
  if (type == "integer") return integer();
  const RuleId r = b_.new_rule();
  if (type == "boolean") {
    b_.add_alternative(r, b_.literal("true"));
    b_.add_alternative(r, b_.literal("false"));
  } else {
    b_.add_alternative(r, b_.literal("null"));
  }
  return r;
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::object(const json& s, const std::string& path, int depth) {
  const auto ws = GrammarBuilder::ref(whitespace());
  const auto open = b_.bytes(ByteSet::of('{')), close = b_.bytes(ByteSet::of('}'));
  const auto colon = b_.bytes(ByteSet::of(':')), comma = b_.bytes(ByteSet::of(','));
  const json empty = json::object();
  const json& props = s.contains("properties") ? s.at("properties") : empty;
  if (!props.is_object()) return unsupported("'properties' must be an object", path);
  std::set<std::string> required;
  if (auto r = s.find("required"); r != s.end()) {
    if (!r->is_array()) return unsupported("'required' must be an array of strings", path);
    for (const auto& name : *r) {
      if (!name.is_string()) return unsupported("'required' must be an array of strings", path);
      if (!props.contains(name.get<std::string>()))
        return unsupported("required property '" + name.get<std::string>() + "' is not in 'properties'", path);
      required.insert(name.get<std::string>());
    }
  }
  const json* additional = nullptr;
  if (auto a = s.find("additionalProperties"); a != s.end()) {
    if (!a->is_boolean() && !a->is_object()) return unsupported("'additionalProperties' must be a boolean or a schema", path);
    additional = &*a;
  }

  const RuleId r = b_.new_rule();
  if (props.empty()) {
    if (!additional || (additional->is_boolean() && additional->get<bool>())) {
      b_.add_alternative(r, {GrammarBuilder::ref(any_object())});
    } else if (additional->is_boolean()) {
      b_.add_alternative(r, {open, ws, close});  // additionalProperties false and nothing listed: {}
    } else {  // a map: any keys, values of one schema
      auto value = compile(*additional, path + "/additionalProperties", depth + 1);
      if (!value) return value.error();
      const RuleId member = b_.new_rule();
      b_.add_alternative(member, {GrammarBuilder::ref(any_string()), ws, colon, ws, GrammarBuilder::ref(*value), ws});
      const RuleId more = b_.new_rule();
      b_.add_alternative(more, {comma, ws, GrammarBuilder::ref(member)});
      b_.add_alternative(r, {open, ws, close});
      b_.add_alternative(r, {open, ws, GrammarBuilder::ref(member),
                             GrammarBuilder::ref(b_.repeat(GrammarBuilder::ref(more), 0, -1)), close});
    }
    return r;
  }

  // rest[i][c]: properties i.. of which some may follow, c whether one was written (a comma first).
  struct Prop {
    std::string name;
    RuleId value;
  };
  std::vector<Prop> list;
  for (const auto& [name, sub] : props.items()) {
    auto value = compile(sub, path + "/properties/" + name, depth + 1);
    if (!value) return value.error();
    list.push_back({name, *value});
  }
  const size_t n = list.size();
  std::vector<std::array<RuleId, 2>> rest(n + 1);
  rest[n] = {b_.new_rule(), b_.new_rule()};
  b_.add_alternative(rest[n][0], {});
  b_.add_alternative(rest[n][1], {});
  for (size_t i = n; i-- > 0;) {
    Seq kv = b_.literal(json(list[i].name).dump());
    for (auto sym : {ws, colon, ws, GrammarBuilder::ref(list[i].value), ws}) kv.push_back(sym);
    for (int c = 0; c < 2; ++c) {
      rest[i][c] = b_.new_rule();
      Seq with = c ? Seq{comma, ws} : Seq{};
      with.insert(with.end(), kv.begin(), kv.end());
      with.push_back(GrammarBuilder::ref(rest[i + 1][1]));
      b_.add_alternative(rest[i][c], std::move(with));
      if (!required.count(list[i].name)) b_.add_alternative(rest[i][c], {GrammarBuilder::ref(rest[i + 1][c])});
    }
  }
  b_.add_alternative(r, {open, ws, GrammarBuilder::ref(rest[0][0]), close});
  return r;
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::array(const json& s, const std::string& path, int depth) {
  auto min = count_keyword(s, "minItems", path);
  if (!min) return min.error();
  auto max = count_keyword(s, "maxItems", path);
  if (!max) return max.error();
  const size_t lo = min->value_or(0);
  if (*max && **max < lo) return unsupported("'maxItems' is less than 'minItems'", path);
  RuleId item_value;
  if (auto it = s.find("items"); it != s.end()) {
    if (it->is_array()) return unsupported("'items' as an array (tuples) is not supported", path);
    auto v = compile(*it, path + "/items", depth + 1);
    if (!v) return v.error();
    item_value = *v;
  } else {
    item_value = any_value();
  }
  const auto ws = GrammarBuilder::ref(whitespace());
  const auto open = b_.bytes(ByteSet::of('[')), close = b_.bytes(ByteSet::of(']'));
  const RuleId item = b_.new_rule();
  b_.add_alternative(item, {GrammarBuilder::ref(item_value), ws});
  const RuleId more = b_.new_rule();
  b_.add_alternative(more, {b_.bytes(ByteSet::of(',')), ws, GrammarBuilder::ref(item)});
  const RuleId r = b_.new_rule();
  if (*max && **max == 0) {
    b_.add_alternative(r, {open, ws, close});
    return r;
  }
  if (lo == 0) b_.add_alternative(r, {open, ws, close});
  const long hi = *max ? static_cast<long>(**max) - 1 : -1;
  const RuleId tail = b_.repeat(GrammarBuilder::ref(more), lo > 0 ? lo - 1 : 0, hi);
  b_.add_alternative(r, {open, ws, GrammarBuilder::ref(item), GrammarBuilder::ref(tail), close});
  return r;
}

Result<JsonSchemaGrammar::RuleId> JsonSchemaGrammar::string(const json& s, const std::string& path) {
  auto min = count_keyword(s, "minLength", path);
  if (!min) return min.error();
  auto max = count_keyword(s, "maxLength", path);
  if (!max) return max.error();
  if (!*min && !*max) return any_string();
  const size_t lo = min->value_or(0);
  if (*max && **max < lo) return unsupported("'maxLength' is less than 'minLength'", path);
  if (lo > 100000 || (*max && **max > 100000))
    return Error{ErrorCode::ResourceExhausted, "string lengths over 100000 are not supported at " + path};
  const RuleId r = b_.new_rule();
  const auto quote = b_.bytes(ByteSet::of('"'));
  const long hi = *max ? static_cast<long>(**max) : -1;
  b_.add_alternative(r, {quote, GrammarBuilder::ref(b_.repeat(GrammarBuilder::ref(string_char()), lo, hi)), quote});
  return r;
}

Result<Grammar> json_schema_grammar(const nlohmann::ordered_json& schema, const GrammarLimits& limits) {
  GrammarBuilder b(limits);
  JsonSchemaGrammar compiler(b);
  auto root = compiler.schema(schema);
  if (!root) return root.error();
  return b.finish(*root);
}

Result<Grammar> json_object_grammar(const GrammarLimits& limits) {
  GrammarBuilder b(limits);
  JsonSchemaGrammar compiler(b);
  return b.finish(compiler.any_object());
}

}  // namespace omni::model
