// jinja::Value: what a Jinja template computes with, with Python's semantics as jinja2 gives them
// (a chat template is Python code in disguise: str(), repr(), ==, truthiness and json.dumps() of its
// values appear in the prompt byte for byte).
//
// Strings are Text: bytes plus, per byte, whether it came from the caller's data (a message, a tool
// definition) rather than from the template. Every operation keeps that mark on the bytes it copies
// and marks a whole result when it cannot tell bytes apart (replace, case changes, json escaping):
// data never loses its mark, so a renderer can tokenize data as plain text (see JinjaChatTemplate).
//
// Lists and dicts are shared (copying a Value copies a pointer), as Python's are; the sandbox
// makes them immutable to templates. Dicts keep insertion order, as Python's do.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace omni::model::jinja {

struct Text {
  std::string bytes;
  std::string marks;  // empty when no byte is data; else one per byte, nonzero where it is data

  Text() = default;
  explicit Text(std::string plain) : bytes(std::move(plain)) {}
  static Text data(std::string bytes);  // every byte marked as data
  bool has_data() const;
  bool is_data(size_t i) const { return !marks.empty() && marks[i] != 0; }
  void append(const Text& t);
  void append(std::string_view plain, bool data = false);
  Text substr(size_t pos, size_t n = std::string::npos) const;
  // The same bytes marked wholly as data when `from` has any data in it.
  static Text derived(std::string bytes, bool data);
};

class Value;
using List = std::vector<Value>;
struct Dict;
struct Function;

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Function };

  Value() = default;  // Undefined
  static Value undefined(std::string hint) {
    Value v;
    v.hint_ = std::make_shared<const std::string>(std::move(hint));
    return v;
  }
  static Value none() { return Value(Kind::None); }
  // A string marked safe (jinja2's Markup, from the safe and escape filters): adding a plain
  // string to it HTML-escapes that string, which some templates' output depends on.
  static Value markup(Text t) {
    Value v(std::move(t));
    v.markup_ = true;
    return v;
  }
  // A list that Python would hold as a tuple: the same but for its repr, "(1, 2)".
  static Value tuple(List l) {
    Value v(std::move(l));
    v.tuple_ = true;
    return v;
  }
  Value(bool b) : kind_(Kind::Bool), b_(b) {}  // NOLINT(google-explicit-constructor)
  Value(int64_t i) : kind_(Kind::Int), i_(i) {}  // NOLINT(google-explicit-constructor)
  Value(int i) : kind_(Kind::Int), i_(i) {}      // NOLINT(google-explicit-constructor)
  Value(double f) : kind_(Kind::Float), f_(f) {}  // NOLINT(google-explicit-constructor)
  Value(Text t);                                  // NOLINT(google-explicit-constructor)
  Value(std::string plain) : Value(Text(std::move(plain))) {}  // NOLINT(google-explicit-constructor)
  Value(const char* plain) : Value(Text(plain)) {}              // NOLINT(google-explicit-constructor)
  Value(List l);                                                // NOLINT(google-explicit-constructor)
  Value(Dict d);                                                // NOLINT(google-explicit-constructor)
  Value(std::shared_ptr<Function> f);                           // NOLINT(google-explicit-constructor)

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_tuple() const { return tuple_; }
  bool is_markup() const { return markup_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::Bool ? int64_t(b_) : i_; }
  double as_float() const { return kind_ == Kind::Float ? f_ : double(as_int()); }
  const Text& text() const { return *s_; }
  const std::string& str() const { return s_->bytes; }
  const List& list() const { return *l_; }
  const Dict& dict() const { return *d_; }
  Dict& mutable_dict() const { return *d_; }
  const std::shared_ptr<Function>& function() const { return fn_; }
  const std::string& undefined_hint() const;

  bool truthy() const;
  // Python's str(): what {{ value }} prints ("" for Undefined).
  Text to_text() const;
  // Python's repr(), as str() of a container writes its items.
  Text repr() const;
  // The name jinja2's messages give the type ("str", "list", "dict", ...).
  std::string type_name() const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  bool tuple_ = false;
  bool markup_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const Text> s_;
  std::shared_ptr<List> l_;
  std::shared_ptr<Dict> d_;
  std::shared_ptr<Function> fn_;
  std::shared_ptr<const std::string> hint_;  // Undefined: what was looked up, for errors
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace(): the one kind of object `set ns.attr = ...` may change

  const Value* find(std::string_view key) const;
  void set(std::string key, Value v);
};

// Python's ==, as jinja2 compares (1 == 1.0 == True; lists and dicts item by item).
bool equal(const Value& a, const Value& b);

// Python's float repr (shortest round trip: 1.0, 0.1, 1e+16).
std::string float_repr(double f);

}  // namespace omni::model::jinja
