#include "model/jinja_value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

namespace omni::model::jinja {

Text Text::data(std::string bytes) {
  Text t;
  t.marks.assign(bytes.size(), 1);
  t.bytes = std::move(bytes);
  return t;
}

bool Text::has_data() const {
  for (char m : marks)
    if (m) return true;
  return false;
}

void Text::append(const Text& t) {
  if (t.marks.empty()) {
    append(t.bytes, false);
    return;
  }
  if (marks.empty()) marks.assign(bytes.size(), 0);
  bytes += t.bytes;
  marks += t.marks;
}

void Text::append(std::string_view plain, bool data) {
  // marks stay empty until some byte is data (then they cover every byte).
  if (data && marks.empty() && !plain.empty()) marks.assign(bytes.size(), 0);
  bytes.append(plain);
  if (!marks.empty() || (data && !plain.empty())) marks.append(plain.size(), data ? 1 : 0);
}

Text Text::substr(size_t pos, size_t n) const {
  Text t;
  t.bytes = bytes.substr(pos, n);
  if (!marks.empty()) {
    t.marks = marks.substr(pos, n);
    if (!t.has_data()) t.marks.clear();
  }
  return t;
}

Text Text::derived(std::string bytes, bool data) { return data ? Text::data(std::move(bytes)) : Text(std::move(bytes)); }

Value::Value(Text t) : kind_(Kind::String), s_(std::make_shared<const Text>(std::move(t))) {}
Value::Value(List l) : kind_(Kind::List), l_(std::make_shared<List>(std::move(l))) {}
Value::Value(Dict d) : kind_(Kind::Dict), d_(std::make_shared<Dict>(std::move(d))) {}
Value::Value(std::shared_ptr<Function> f) : kind_(Kind::Function), fn_(std::move(f)) {}

const std::string& Value::undefined_hint() const {
  static const std::string kNone;
  return hint_ ? *hint_ : kNone;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0;
    case Kind::String: return !s_->bytes.empty();
    case Kind::List: return !l_->empty();
    case Kind::Dict: return !d_->items.empty();
    case Kind::Function: return true;
  }
  return false;
}

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // d.ddde±XX, shortest round trip
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp = std::stoi(sci.substr(e + 1));
  bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    int mag = exp < 0 ? -exp : exp;
    out += exp < 0 ? "e-" : "e+";
    if (mag < 10) out += '0';
    out += std::to_string(mag);
  } else if (exp < 0) {
    out = "0." + std::string(size_t(-exp - 1), '0') + digits;
  } else {
    size_t int_len = size_t(exp) + 1;
    if (digits.size() <= int_len) {
      out = digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return neg ? "-" + out : out;
}

namespace {

void repr_string(const Text& t, Text& out) {
  const std::string& s = t.bytes;
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = has_single && !has_double ? '"' : '\'';
  std::string r(1, q);
  for (unsigned char c : s) {
    if (c == '\\') r += "\\\\";
    else if (c == static_cast<unsigned char>(q)) r += std::string("\\") + char(q);
    else if (c == '\n') r += "\\n";
    else if (c == '\r') r += "\\r";
    else if (c == '\t') r += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      r += b;
    } else {
      r += char(c);
    }
  }
  r += q;
  out.append(r, t.has_data());
}

void write_repr(const Value& v, Text& out);

void write_items(const Value& v, Text& out) {
  if (v.is_list()) {
    out.append(v.is_tuple() ? "(" : "[");
    bool first = true;
    for (const Value& item : v.list()) {
      if (!first) out.append(", ");
      first = false;
      write_repr(item, out);
    }
    if (v.is_tuple() && v.list().size() == 1) out.append(",");
    out.append(v.is_tuple() ? ")" : "]");
  } else {
    out.append("{");
    bool first = true;
    for (const auto& [k, item] : v.dict().items) {
      if (!first) out.append(", ");
      first = false;
      repr_string(Text(k), out);
      out.append(": ");
      write_repr(item, out);
    }
    out.append("}");
  }
}

void write_repr(const Value& v, Text& out) {
  switch (v.kind()) {
    case Value::Kind::String: repr_string(v.text(), out); return;
    case Value::Kind::List:
    case Value::Kind::Dict:
      if (v.is_dict() && v.dict().is_namespace) {
        out.append("<Namespace>");
        return;
      }
      write_items(v, out);
      return;
    default: out.append(v.to_text()); return;
  }
}

}  // namespace

Text Value::to_text() const {
  switch (kind_) {
    case Kind::Undefined: return Text();
    case Kind::None: return Text("None");
    case Kind::Bool: return Text(b_ ? "True" : "False");
    case Kind::Int: return Text(std::to_string(i_));
    case Kind::Float: return Text(float_repr(f_));
    case Kind::String: return *s_;
    case Kind::List:
    case Kind::Dict: {
      Text out;
      write_repr(*this, out);
      return out;
    }
    case Kind::Function: return Text("<function>");
  }
  return Text();
}

Text Value::repr() const {
  Text out;
  write_repr(*this, out);
  return out;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Dict: return d_->is_namespace ? "Namespace" : "dict";
    case Kind::Function: return "function";
  }
  return "object";
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(std::string key, Value v) {
  for (auto& [k, old] : items) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(v));
}

bool equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == K::Float || b.kind() == K::Float) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None: return true;
    case K::String: return a.str() == b.str();
    case K::List: {
      if (a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i)
        if (!equal(a.list()[i], b.list()[i])) return false;
      return true;
    }
    case K::Dict: {
      if (&a.dict() == &b.dict()) return true;
      if (a.dict().is_namespace || b.dict().is_namespace) return false;
      if (a.dict().items.size() != b.dict().items.size()) return false;
      for (const auto& [k, v] : a.dict().items) {
        const Value* w = b.dict().find(k);
        if (!w || !equal(v, *w)) return false;
      }
      return true;
    }
    case K::Function: return a.function() == b.function();
    default: return false;
  }
}

}  // namespace omni::model::jinja
