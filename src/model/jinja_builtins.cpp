#include "model/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace omni::model::jinja {
namespace {

[[noreturn]] void fail(std::string msg) { throw Failure{ErrorCode::InvalidArgument, std::move(msg)}; }

// ---- UTF-8: Python indexes strings by code point.

// Byte offsets where each code point starts, plus the end: size() - 1 code points.
std::vector<size_t> cp_starts(const std::string& s) {
  std::vector<size_t> out;
  out.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    out.push_back(i);
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = 1;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) n = 1;
    i += n;
  }
  out.push_back(s.size());
  return out;
}

uint32_t decode_at(const std::string& s, size_t i, size_t n) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (n == 1) return c;
  uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

size_t cp_count(const std::string& s) { return cp_starts(s).size() - 1; }

// str.isspace() of one code point.
bool py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Python's strip family: whitespace, or the code points of `chars`.
Text strip(const Text& t, const std::optional<std::string>& chars, bool left, bool right) {
  const std::string& s = t.bytes;
  std::vector<size_t> st = cp_starts(s);
  std::vector<uint32_t> set;
  if (chars) {
    std::vector<size_t> cs = cp_starts(*chars);
    for (size_t i = 0; i + 1 < cs.size(); ++i) set.push_back(decode_at(*chars, cs[i], cs[i + 1] - cs[i]));
  }
  auto strippable = [&](size_t k) {
    uint32_t cp = decode_at(s, st[k], st[k + 1] - st[k]);
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : py_space(cp);
  };
  size_t n = st.size() - 1, b = 0, e = n;
  if (left)
    while (b < e && strippable(b)) ++b;
  if (right)
    while (e > b && strippable(e - 1)) --e;
  return t.substr(st[b], st[e] - st[b]);
}

std::string ascii_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string ascii_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    if (is_alpha(c)) {
      c = static_cast<char>(prev_cased ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
      prev_cased = true;
    } else {
      prev_cased = (static_cast<unsigned char>(c) & 0x80) != 0 && prev_cased;
    }
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// markupsafe.escape(): what jinja2 does to a plain string added to a Markup one.
Text html_escape(const Text& t) {
  Text out;
  for (size_t i = 0; i < t.bytes.size(); ++i) {
    const char c = t.bytes[i];
    const char* rep = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;" : c == '\'' ? "&#39;" : nullptr;
    if (rep) out.append(rep, t.is_data(i));
    else out.append(std::string_view(&t.bytes[i], 1), t.is_data(i));
  }
  return out;
}

// ---- Arguments.

const Value* kwarg(const Args& a, std::string_view name) {
  for (const auto& [k, v] : a.kw)
    if (k == name) return &v;
  return nullptr;
}

// Positional argument `i` or keyword `name`, else nullptr.
const Value* arg(const Args& a, size_t i, std::string_view name) {
  if (i < a.pos.size()) return &a.pos[i];
  return kwarg(a, name);
}

const Value& need(const Args& a, size_t i, std::string_view name, std::string_view fn) {
  const Value* v = arg(a, i, name);
  if (!v) fail(std::string(fn) + "() missing argument '" + std::string(name) + "'");
  return *v;
}

std::string need_string(const Value& v, std::string_view what) {
  if (!v.is_string()) fail(std::string(what) + " must be a string, not '" + v.type_name() + "'");
  return v.str();
}

int64_t need_int(const Value& v, std::string_view what) {
  if (v.kind() != Value::Kind::Int && v.kind() != Value::Kind::Bool)
    fail(std::string(what) + " must be an integer, not '" + v.type_name() + "'");
  return v.as_int();
}

std::shared_ptr<Function> make_fn(std::string name, std::function<Value(Runtime&, Args&)> call) {
  auto f = std::make_shared<Function>();
  f->name = std::move(name);
  f->call = std::move(call);
  return f;
}

// ---- Ordering (sort, dictsort, min/max, <).

int order(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_number() && b.is_number()) {
    double x = a.as_float(), y = b.as_float();
    if (a.kind() != Value::Kind::Float && b.kind() != Value::Kind::Float) {
      int64_t i = a.as_int(), j = b.as_int();
      return i < j ? -1 : i > j ? 1 : 0;
    }
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = case_sensitive ? a.str().compare(b.str()) : ascii_lower(a.str()).compare(ascii_lower(b.str()));
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list()) {
    const List &x = a.list(), &y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      int c = order(x[i], y[i], case_sensitive);
      if (c) return c;
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined() || b.is_undefined()) fail(undefined_message(a.is_undefined() ? a : b));
  fail("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

// attribute="a.b" or an index, as jinja2's make_attrgetter reads it.
Value attr_path(const Value& v, const Value& attribute) {
  if (attribute.kind() == Value::Kind::Int) return get_item(v, attribute);
  std::string path = need_string(attribute, "attribute");
  Value cur = v;
  size_t start = 0;
  for (;;) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    cur = digits ? get_item(cur, Value(int64_t(std::stoll(part)))) : get_item(cur, Value(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// ---- JSON (Python's json.dumps).

void json_string(const Text& t, bool ensure_ascii, Text& out) {
  const std::string& s = t.bytes;
  std::string r = "\"";
  std::vector<size_t> st = cp_starts(s);
  for (size_t k = 0; k + 1 < st.size(); ++k) {
    size_t i = st[k], n = st[k + 1] - i;
    uint32_t cp = decode_at(s, i, n);
    char buf[16];
    switch (cp) {
      case '"': r += "\\\""; continue;
      case '\\': r += "\\\\"; continue;
      case '\n': r += "\\n"; continue;
      case '\r': r += "\\r"; continue;
      case '\t': r += "\\t"; continue;
      case '\b': r += "\\b"; continue;
      case '\f': r += "\\f"; continue;
      default: break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      r += buf;
    } else {
      r.append(s, i, n);
    }
  }
  r += '"';
  out.append(r, t.has_data());
}

struct JsonStyle {
  bool ensure_ascii;
  std::optional<std::string> indent;
  bool sort_keys;
  std::string item_sep, key_sep;
};

void json_value(Runtime& rt, const Value& v, const JsonStyle& st, int level, Text& out, int depth) {
  if (depth > 1000) fail("value nested too deeply for tojson");
  rt.step();
  switch (v.kind()) {
    case Value::Kind::None: out.append("null"); return;
    case Value::Kind::Bool: out.append(v.as_bool() ? "true" : "false"); return;
    case Value::Kind::Int: out.append(std::to_string(v.as_int())); return;
    case Value::Kind::Float: {
      double f = v.as_float();
      if (std::isnan(f)) out.append("NaN");
      else if (std::isinf(f)) out.append(f > 0 ? "Infinity" : "-Infinity");
      else out.append(float_repr(f));
      return;
    }
    case Value::Kind::String: json_string(v.text(), st.ensure_ascii, out); return;
    case Value::Kind::List:
    case Value::Kind::Dict: {
      bool is_list = v.is_list();
      if (v.is_dict() && v.dict().is_namespace) fail("Object of type Namespace is not JSON serializable");
      size_t n = is_list ? v.list().size() : v.dict().items.size();
      if (n == 0) {
        out.append(is_list ? "[]" : "{}");
        return;
      }
      out.append(is_list ? "[" : "{");
      std::string newline_indent;
      if (st.indent) {
        newline_indent = "\n";
        for (int i = 0; i <= level; ++i) newline_indent += *st.indent;
        out.append(newline_indent);
      }
      std::string sep = st.item_sep + newline_indent;
      if (is_list) {
        for (size_t i = 0; i < n; ++i) {
          if (i) out.append(sep);
          json_value(rt, v.list()[i], st, level + 1, out, depth + 1);
        }
      } else {
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& kv : v.dict().items) items.push_back(&kv);
        if (st.sort_keys)
          std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
        bool first = true;
        for (const auto* kv : items) {
          if (!first) out.append(sep);
          first = false;
          json_string(Text(kv->first), st.ensure_ascii, out);
          out.append(st.key_sep);
          json_value(rt, kv->second, st, level + 1, out, depth + 1);
        }
      }
      if (st.indent) {
        std::string close = "\n";
        for (int i = 0; i < level; ++i) close += *st.indent;
        out.append(close);
      }
      out.append(is_list ? "]" : "}");
      return;
    }
    default: fail("Object of type " + v.type_name() + " is not JSON serializable");
  }
}

// ---- str methods.

List split(const Text& t, const std::optional<std::string>& sep, int64_t maxsplit) {
  const std::string& s = t.bytes;
  List out;
  if (sep) {
    if (sep->empty()) fail("empty separator");
    size_t start = 0;
    for (;;) {
      size_t p = maxsplit == 0 ? std::string::npos : s.find(*sep, start);
      if (p == std::string::npos) {
        out.push_back(Value(t.substr(start)));
        return out;
      }
      out.push_back(Value(t.substr(start, p - start)));
      start = p + sep->size();
      if (maxsplit > 0) --maxsplit;
    }
  }
  std::vector<size_t> st = cp_starts(s);
  size_t n = st.size() - 1, k = 0;
  auto space = [&](size_t i) { return py_space(decode_at(s, st[i], st[i + 1] - st[i])); };
  for (;;) {
    while (k < n && space(k)) ++k;
    if (k >= n) return out;
    if (maxsplit == 0) {
      size_t e = n;
      while (e > k && space(e - 1)) --e;
      out.push_back(Value(t.substr(st[k], st[e] - st[k])));
      return out;
    }
    size_t b = k;
    while (k < n && !space(k)) ++k;
    out.push_back(Value(t.substr(st[b], st[k] - st[b])));
    if (maxsplit > 0) --maxsplit;
  }
}

List splitlines(const Text& t) {
  List out;
  const std::string& s = t.bytes;
  size_t start = 0;
  for (size_t i = 0; i < s.size();) {
    size_t brk = 0;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') brk = 2;
    else if (c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E)) brk = 1;
    else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x85) brk = 2;
    else if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
             (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9))
      brk = 3;
    if (brk) {
      out.push_back(Value(t.substr(start, i - start)));
      i += brk;
      start = i;
    } else {
      ++i;
    }
  }
  if (start < s.size()) out.push_back(Value(t.substr(start)));
  return out;
}

Text replace(Runtime& rt, const Text& t, const std::string& from, const Text& to, int64_t count) {
  const std::string& s = t.bytes;
  Text out;
  if (from.empty()) {
    std::vector<size_t> st = cp_starts(s);
    for (size_t k = 0; k + 1 < st.size(); ++k) {
      if (count < 0 || int64_t(k) < count) out.append(to);
      out.append(t.substr(st[k], st[k + 1] - st[k]));
      rt.charge(to.bytes.size());
    }
    if (count < 0 || int64_t(st.size() - 1) < count) out.append(to);
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  for (;;) {
    size_t p = (count >= 0 && done >= count) ? std::string::npos : s.find(from, start);
    if (p == std::string::npos) {
      out.append(t.substr(start));
      break;
    }
    out.append(t.substr(start, p - start));
    out.append(to);
    rt.charge(to.bytes.size() + (p - start));
    start = p + from.size();
    ++done;
  }
  return out;
}

bool affix_test(const std::string& s, const Value& what, bool prefix) {
  auto one = [&](const Value& v) {
    std::string a = need_string(v, prefix ? "startswith() argument" : "endswith() argument");
    if (a.size() > s.size()) return false;
    return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
  };
  if (what.is_list()) return std::any_of(what.list().begin(), what.list().end(), one);
  return one(what);
}

Text join(Runtime& rt, const List& items, const Text& sep, const Value* attribute) {
  Text out;
  bool first = true;
  for (const Value& item : items) {
    if (!first) out.append(sep);
    first = false;
    out.append(attribute ? attr_path(item, *attribute).to_text() : item.to_text());
  }
  rt.charge(out.bytes.size());
  return out;
}

bool all_chars(const std::string& s, int (*pred)(int)) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c >= 0x80 || !pred(c)) return false;
  return true;
}

Value str_method(Runtime& rt, const Value& self, const std::string& m, Args& a) {
  const Text& t = self.text();
  const std::string& s = t.bytes;
  auto opt_str = [&](size_t i, std::string_view name) -> std::optional<std::string> {
    const Value* v = arg(a, i, name);
    if (!v || v->is_none()) return std::nullopt;
    return need_string(*v, name);
  };
  if (m == "strip" || m == "lstrip" || m == "rstrip")
    return Value(strip(t, opt_str(0, "chars"), m != "rstrip", m != "lstrip"));
  if (m == "split" || m == "rsplit") {
    const Value* mx = arg(a, 1, "maxsplit");
    int64_t maxsplit = mx ? need_int(*mx, "maxsplit") : -1;
    if (m == "rsplit" && maxsplit >= 0) fail("rsplit with maxsplit is not supported");
    List parts = split(t, opt_str(0, "sep"), maxsplit);
    rt.charge(parts.size() * sizeof(Value) + s.size());
    return Value(std::move(parts));
  }
  if (m == "splitlines") return Value(splitlines(t));
  if (m == "startswith" || m == "endswith") return Value(affix_test(s, need(a, 0, "prefix", m), m == "startswith"));
  if (m == "upper") return Value(Text::derived(ascii_upper(s), t.has_data()));
  if (m == "lower") return Value(Text::derived(ascii_lower(s), t.has_data()));
  if (m == "title") return Value(Text::derived(py_title(s), t.has_data()));
  if (m == "capitalize") return Value(Text::derived(py_capitalize(s), t.has_data()));
  if (m == "replace") {
    const Value* c = arg(a, 2, "count");
    Value to = need(a, 1, "new", m);
    need_string(to, "replace() argument 2");
    return Value(replace(rt, t, need_string(need(a, 0, "old", m), "replace() argument 1"), to.text(),
                         c ? need_int(*c, "count") : -1));
  }
  if (m == "find" || m == "rfind" || m == "index" || m == "count") {
    std::string sub = need_string(need(a, 0, "sub", m), m + "() argument");
    if (m == "count") {
      if (sub.empty()) return Value(int64_t(cp_count(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    size_t p = m == "rfind" ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos) {
      if (m == "index") fail("substring not found");
      return Value(int64_t(-1));
    }
    return Value(int64_t(cp_count(s.substr(0, p))));
  }
  if (m == "join") {
    const Value& items = need(a, 0, "iterable", m);
    return Value(join(rt, iterate(items), t, nullptr));
  }
  if (m == "isdigit") return Value(all_chars(s, [](int c) { return std::isdigit(c); }));
  if (m == "isalpha") return Value(all_chars(s, [](int c) { return std::isalpha(c); }));
  if (m == "isalnum") return Value(all_chars(s, [](int c) { return std::isalnum(c); }));
  if (m == "isspace") return Value(all_chars(s, [](int c) { return std::isspace(c); }));
  if (m == "islower" || m == "isupper") {
    bool any = false;
    for (unsigned char c : s) {
      if (!std::isalpha(c)) continue;
      any = true;
      if (m == "islower" ? std::isupper(c) : std::islower(c)) return Value(false);
    }
    return Value(any);
  }
  fail("'str' object has no attribute '" + m + "'");
}

bool is_str_method(const std::string& m) {
  static const char* kNames[] = {"strip",   "lstrip",     "rstrip", "split",   "rsplit",  "splitlines", "startswith",
                                 "endswith", "upper",     "lower",  "title",   "capitalize", "replace", "find",
                                 "rfind",   "index",      "count",  "join",    "isdigit", "isalpha",  "isalnum",
                                 "isspace", "islower",    "isupper"};
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return m == n; });
}

Value dict_method(const Value& self, const std::string& m, Args& a) {
  const Dict& d = self.dict();
  if (m == "items") {
    List out;
    for (const auto& [k, v] : d.items) out.push_back(Value::tuple(List{Value(k), v}));
    return Value(std::move(out));
  }
  if (m == "keys") {
    List out;
    for (const auto& kv : d.items) out.push_back(Value(kv.first));
    return Value(std::move(out));
  }
  if (m == "values") {
    List out;
    for (const auto& kv : d.items) out.push_back(kv.second);
    return Value(std::move(out));
  }
  if (m == "get") {
    const Value& key = need(a, 0, "key", m);
    const Value* dflt = arg(a, 1, "default");
    if (key.is_string())
      if (const Value* v = d.find(key.str())) return *v;
    return dflt ? *dflt : Value::none();
  }
  fail("'dict' object has no attribute '" + m + "'");
}

Value list_method(const Value& self, const std::string& m, Args& a) {
  const List& l = self.list();
  const Value& x = need(a, 0, "value", m);
  if (m == "count") return Value(int64_t(std::count_if(l.begin(), l.end(), [&](const Value& v) { return equal(v, x); })));
  for (size_t i = 0; i < l.size(); ++i)
    if (equal(l[i], x)) return Value(int64_t(i));
  fail("value is not in list");
}

bool is_mutator(const std::string& m) {
  static const char* kNames[] = {"append", "extend", "insert", "pop",   "remove", "clear",  "sort",
                                 "reverse", "update", "setdefault", "popitem", "add", "discard"};
  return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return m == n; });
}

Value bound(const Value& self, const std::string& m, Value (*impl)(Runtime&, const Value&, const std::string&, Args&)) {
  return Value(make_fn(m, [self, m, impl](Runtime& rt, Args& a) { return impl(rt, self, m, a); }));
}

// ---- Filters.

Value round_value(double x, int64_t precision, const std::string& method) {
  double p = std::pow(10.0, double(precision));
  double y = x * p;
  double r;
  if (method == "common") r = std::nearbyint(y);  // Python's round(): halves to even
  else if (method == "ceil") r = std::ceil(y);
  else if (method == "floor") r = std::floor(y);
  else fail("method must be common, ceil or floor");
  return Value(r / p);
}

Text indent(const Text& t, const std::string& ind, bool first, bool blank) {
  Text s = t;
  s.append("\n");
  List lines = splitlines(s);
  Text out;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Text& line = lines[i].text();
    if (i > 0) {
      out.append("\n");
      if (blank || !line.bytes.empty()) out.append(ind);
    }
    out.append(line);
  }
  if (first) {
    Text r(ind);
    r.append(out);
    return r;
  }
  return out;
}

Value do_filter(Runtime& rt, const std::string& name, Args& a);

bool select_item(Runtime& rt, const Value& v, const Args& a, size_t test_at) {
  if (a.pos.size() <= test_at) return v.truthy();
  Args t;
  t.pos.push_back(v);
  for (size_t i = test_at + 1; i < a.pos.size(); ++i) t.pos.push_back(a.pos[i]);
  return apply_test(rt, need_string(a.pos[test_at], "test name"), t);
}

}  // namespace

std::string undefined_message(const Value& v) {
  return v.undefined_hint().empty() ? "undefined value" : v.undefined_hint();
}

List iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.list();
    case Value::Kind::Dict: {
      if (v.dict().is_namespace) fail("'Namespace' object is not iterable");
      List out;
      for (const auto& kv : v.dict().items) out.push_back(Value(kv.first));
      return out;
    }
    case Value::Kind::String: {
      List out;
      std::vector<size_t> st = cp_starts(v.str());
      for (size_t k = 0; k + 1 < st.size(); ++k) out.push_back(Value(v.text().substr(st[k], st[k + 1] - st[k])));
      return out;
    }
    default: fail("'" + v.type_name() + "' object is not iterable");
  }
}

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail(undefined_message(obj));
  if (!name.empty() && name[0] == '_') {
    // The sandbox hides Python's private attributes; a dict key is still an item.
    if (obj.is_dict())
      if (const Value* v = obj.dict().find(name)) return *v;
    return Value::undefined("access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe");
  }
  if (is_mutator(name) && (obj.is_list() || (obj.is_dict() && !obj.dict().is_namespace))) {
    std::string msg = "access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe.";
    return Value(make_fn(name, [msg](Runtime&, Args&) -> Value { fail(msg); }));
  }
  switch (obj.kind()) {
    case Value::Kind::String:
      if (is_str_method(name))
        return bound(obj, name, [](Runtime& rt, const Value& s, const std::string& m, Args& a) { return str_method(rt, s, m, a); });
      break;
    case Value::Kind::Dict: {
      const Dict& d = obj.dict();
      if (!d.is_namespace && (name == "items" || name == "keys" || name == "values" || name == "get"))
        return bound(obj, name, [](Runtime&, const Value& s, const std::string& m, Args& a) { return dict_method(s, m, a); });
      if (const Value* v = d.find(name)) return *v;
      break;
    }
    case Value::Kind::List:
      if (name == "index" || name == "count")
        return bound(obj, name, [](Runtime&, const Value& s, const std::string& m, Args& a) { return list_method(s, m, a); });
      break;
    default: break;
  }
  return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + name + "'");
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail(undefined_message(obj));
  if (obj.is_dict() && !obj.dict().is_namespace && key.is_string()) {
    if (const Value* v = obj.dict().find(key.str())) return *v;
    return get_attr(obj, key.str());
  }
  if ((obj.is_list() || obj.is_string()) && (key.kind() == Value::Kind::Int || key.kind() == Value::Kind::Bool)) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      int64_t n = int64_t(obj.list().size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("list object has no element " + std::to_string(key.as_int()));
      return obj.list()[size_t(i)];
    }
    std::vector<size_t> st = cp_starts(obj.str());
    int64_t n = int64_t(st.size()) - 1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined("str object has no element " + std::to_string(key.as_int()));
    return Value(obj.text().substr(st[size_t(i)], st[size_t(i) + 1] - st[size_t(i)]));
  }
  if (key.is_string()) return get_attr(obj, key.str());
  return Value::undefined("'" + obj.type_name() + " object' has no element " + key.to_text().bytes);
}

Value slice(Runtime& rt, const Value& v, std::optional<int64_t> start, std::optional<int64_t> stop,
            std::optional<int64_t> step) {
  if (v.is_undefined()) fail(undefined_message(v));
  int64_t st = step.value_or(1);
  if (st == 0) fail("slice step cannot be zero");
  std::vector<size_t> starts;
  int64_t n;
  if (v.is_list()) {
    n = int64_t(v.list().size());
  } else if (v.is_string()) {
    starts = cp_starts(v.str());
    n = int64_t(starts.size()) - 1;
  } else {
    fail("'" + v.type_name() + "' object is not subscriptable");
  }
  auto clamp = [&](std::optional<int64_t> x, int64_t dflt) {
    if (!x) return dflt;
    int64_t i = *x;
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t b = clamp(start, st > 0 ? 0 : n - 1), e = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
  rt.charge(idx.size() * 8);
  if (v.is_list()) {
    List out;
    for (int64_t i : idx) out.push_back(v.list()[size_t(i)]);
    return Value(std::move(out));
  }
  if (st == 1) return Value(v.text().substr(starts[size_t(b)], idx.empty() ? 0 : starts[size_t(e)] - starts[size_t(b)]));
  Text out;
  for (int64_t i : idx) out.append(v.text().substr(starts[size_t(i)], starts[size_t(i) + 1] - starts[size_t(i)]));
  return Value(std::move(out));
}

Value binary_op(Runtime& rt, const std::string& op, const Value& l, const Value& r) {
  if (op == "~") {
    Text t = l.to_text();
    t.append(r.to_text());
    rt.charge(t.bytes.size());
    return Value(std::move(t));
  }
  if (l.is_undefined()) fail(undefined_message(l));
  if (r.is_undefined()) fail(undefined_message(r));
  auto type_error = [&]() -> Value {
    fail("unsupported operand type(s) for " + op + ": '" + l.type_name() + "' and '" + r.type_name() + "'");
  };
  bool ints = (l.kind() == Value::Kind::Int || l.kind() == Value::Kind::Bool) &&
              (r.kind() == Value::Kind::Int || r.kind() == Value::Kind::Bool);
  bool nums = l.is_number() && r.is_number();
  if (op == "+") {
    if (ints) {
      int64_t out;
      if (__builtin_add_overflow(l.as_int(), r.as_int(), &out)) fail("integer overflow");
      return Value(out);
    }
    if (nums) return Value(l.as_float() + r.as_float());
    if (l.is_string() && r.is_string()) {
      bool markup = l.is_markup() || r.is_markup();
      Text t = markup && !l.is_markup() ? html_escape(l.text()) : l.text();
      t.append(markup && !r.is_markup() ? html_escape(r.text()) : r.text());
      rt.charge(t.bytes.size());
      return markup ? Value::markup(std::move(t)) : Value(std::move(t));
    }
    if (l.is_list() && r.is_list()) {
      List out = l.list();
      out.insert(out.end(), r.list().begin(), r.list().end());
      rt.charge(out.size() * sizeof(Value));
      return Value(std::move(out));
    }
    return type_error();
  }
  if (op == "-") {
    if (ints) {
      int64_t out;
      if (__builtin_sub_overflow(l.as_int(), r.as_int(), &out)) fail("integer overflow");
      return Value(out);
    }
    if (nums) return Value(l.as_float() - r.as_float());
    return type_error();
  }
  if (op == "*") {
    if (ints) {
      int64_t out;
      if (__builtin_mul_overflow(l.as_int(), r.as_int(), &out)) fail("integer overflow");
      return Value(out);
    }
    if (nums) return Value(l.as_float() * r.as_float());
    const Value* seq = l.is_string() || l.is_list() ? &l : r.is_string() || r.is_list() ? &r : nullptr;
    const Value* count = seq == &l ? &r : &l;
    if (!seq || (count->kind() != Value::Kind::Int && count->kind() != Value::Kind::Bool)) return type_error();
    int64_t n = std::max<int64_t>(0, count->as_int());
    size_t unit = seq->is_string() ? seq->str().size() : seq->list().size() * sizeof(Value);
    if (unit && uint64_t(n) > std::numeric_limits<size_t>::max() / unit) rt.charge(std::numeric_limits<size_t>::max());
    rt.charge(unit * size_t(n));
    if (seq->is_string()) {
      Text t;
      for (int64_t i = 0; i < n; ++i) t.append(seq->text());
      return Value(std::move(t));
    }
    List out;
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq->list().begin(), seq->list().end());
    return Value(std::move(out));
  }
  if (!nums) return type_error();
  if (op == "/") {
    if (r.as_float() == 0) fail("division by zero");
    return Value(l.as_float() / r.as_float());
  }
  if (op == "//" || op == "%") {
    if (ints) {
      int64_t a = l.as_int(), b = r.as_int();
      if (b == 0) fail("integer division or modulo by zero");
      if (a == INT64_MIN && b == -1) fail("integer overflow");
      int64_t q = a / b, m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) {
        --q;
        m += b;
      }
      return Value(op == "//" ? q : m);
    }
    double a = l.as_float(), b = r.as_float();
    if (b == 0) fail("float division by zero");
    if (op == "//") return Value(std::floor(a / b));
    double m = std::fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return Value(m);
  }
  if (op == "**") {
    if (ints && r.as_int() >= 0) {
      int64_t out = 1, base = l.as_int();
      for (int64_t i = 0; i < r.as_int(); ++i) {
        rt.step();
        if (__builtin_mul_overflow(out, base, &out)) fail("integer overflow");
      }
      return Value(out);
    }
    return Value(std::pow(l.as_float(), r.as_float()));
  }
  return type_error();
}

bool compare_op(const std::string& op, const Value& l, const Value& r) {
  if (op == "==") return equal(l, r);
  if (op == "!=") return !equal(l, r);
  if (op == "in" || op == "notin") {
    bool found;
    if (r.is_string()) {
      if (!l.is_string()) fail("'in <string>' requires string as left operand, not " + l.type_name());
      found = r.str().find(l.str()) != std::string::npos;
    } else if (r.is_list()) {
      found = std::any_of(r.list().begin(), r.list().end(), [&](const Value& v) { return equal(v, l); });
    } else if (r.is_dict()) {
      found = l.is_string() && r.dict().find(l.str()) != nullptr;
    } else if (r.is_undefined()) {
      found = false;
    } else {
      fail("argument of type '" + r.type_name() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  int c = order(l, r, /*case_sensitive=*/true);
  if (op == "<") return c < 0;
  if (op == ">") return c > 0;
  if (op == "<=") return c <= 0;
  return c >= 0;
}

Text to_json(Runtime& rt, const Value& v, bool ensure_ascii, std::optional<std::string> indent, bool sort_keys,
             std::optional<std::pair<std::string, std::string>> separators) {
  JsonStyle st{ensure_ascii, std::move(indent), sort_keys, ", ", ": "};
  if (st.indent) st.item_sep = ",";
  if (separators) {
    st.item_sep = separators->first;
    st.key_sep = separators->second;
  }
  Text out;
  json_value(rt, v, st, 0, out, 0);
  rt.charge(out.bytes.size());
  return out;
}

bool apply_test(Runtime& rt, const std::string& name, Args& a) {
  (void)rt;
  const Value& v = a.pos.at(0);
  auto other = [&]() -> const Value& { return need(a, 1, "other", name); };
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind() == K::Int;
  if (name == "float") return v.kind() == K::Float;
  if (name == "boolean") return v.kind() == K::Bool;
  if (name == "true") return v.kind() == K::Bool && v.as_bool();
  if (name == "false") return v.kind() == K::Bool && !v.as_bool();
  if (name == "mapping") return v.is_dict() && !v.dict().is_namespace;
  if (name == "iterable") return v.is_string() || v.is_list() || (v.is_dict() && !v.dict().is_namespace) || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || (v.is_dict() && !v.dict().is_namespace) || v.is_undefined();
  if (name == "callable") return v.kind() == K::Function;
  if (name == "odd" || name == "even") {
    int64_t i = need_int(v, "value");
    return ((i % 2) != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    int64_t d = need_int(other(), "divisor");
    if (d == 0) fail("integer division or modulo by zero");
    return need_int(v, "value") % d == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==") return equal(v, other());
  if (name == "ne" || name == "!=") return !equal(v, other());
  if (name == "lt" || name == "lessthan" || name == "<") return compare_op("<", v, other());
  if (name == "gt" || name == "greaterthan" || name == ">") return compare_op(">", v, other());
  if (name == "le" || name == "<=") return compare_op("<=", v, other());
  if (name == "ge" || name == ">=") return compare_op(">=", v, other());
  if (name == "in") return compare_op("in", v, other());
  if (name == "sameas") {
    const Value& o = other();
    if (v.kind() != o.kind()) return false;
    if (v.is_list()) return &v.list() == &o.list();
    if (v.is_dict()) return &v.dict() == &o.dict();
    return equal(v, o);
  }
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    std::string s = v.str();
    return name == "lower" ? ascii_lower(s) == s : ascii_upper(s) == s;
  }
  fail("no test named '" + name + "'");
}

Value apply_filter(Runtime& rt, const std::string& name, Args& a) {
  return do_filter(rt, name, a);
}

namespace {

Value do_filter(Runtime& rt, const std::string& name, Args& a) {
  const Value v = a.pos.at(0);
  auto p = [&](size_t i, std::string_view kw) { return arg(a, i, kw); };
  auto str_of = [&](const Value& x) -> Text { return x.to_text(); };
  if (name == "safe") return v.is_markup() ? v : Value::markup(str_of(v));
  if (name == "e" || name == "escape" || name == "forceescape") {
    if (v.is_markup() && name != "forceescape") return v;
    Text out = html_escape(str_of(v));
    rt.charge(out.bytes.size());
    return Value::markup(std::move(out));
  }
  if (name == "tojson") {
    const Value* ind = p(1, "indent");
    std::optional<std::string> indent;
    if (ind && !ind->is_none()) {
      if (ind->is_string()) indent = ind->str();
      else {
        int64_t n = need_int(*ind, "indent");
        indent = std::string(size_t(std::clamp<int64_t>(n, 0, 64)), ' ');
      }
    }
    const Value* ea = kwarg(a, "ensure_ascii");
    const Value* sk = kwarg(a, "sort_keys");
    const Value* sep = kwarg(a, "separators");
    std::optional<std::pair<std::string, std::string>> separators;
    if (sep && !sep->is_none()) {
      if (!sep->is_list() || sep->list().size() != 2) fail("separators must be a pair of strings");
      separators = std::make_pair(need_string(sep->list()[0], "separator"), need_string(sep->list()[1], "separator"));
    }
    return Value(to_json(rt, v, ea && ea->truthy(), indent, sk && sk->truthy(), separators));
  }
  if (name == "default" || name == "d") {
    const Value* dflt = p(1, "default_value");
    const Value* boolean = p(2, "boolean");
    bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use ? (dflt ? *dflt : Value("")) : v;
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value(int64_t(cp_count(v.str())));
    if (v.is_list()) return Value(int64_t(v.list().size()));
    if (v.is_dict()) return Value(int64_t(v.dict().items.size()));
    if (v.is_undefined()) return Value(int64_t(0));
    fail("object of type '" + v.type_name() + "' has no len()");
  }
  if (name == "string") return Value(str_of(v));
  if (name == "trim") {
    const Value* chars = p(1, "chars");
    std::optional<std::string> cs;
    if (chars && !chars->is_none()) cs = need_string(*chars, "chars");
    return Value(strip(str_of(v), cs, true, true));
  }
  if (name == "lower") { Text t = str_of(v); return Value(Text::derived(ascii_lower(t.bytes), t.has_data())); }
  if (name == "upper") { Text t = str_of(v); return Value(Text::derived(ascii_upper(t.bytes), t.has_data())); }
  if (name == "capitalize") { Text t = str_of(v); return Value(Text::derived(py_capitalize(t.bytes), t.has_data())); }
  if (name == "title") {
    // jinja2 upper-cases the first character after - or whitespace or an opening bracket.
    Text t = str_of(v);
    std::string s = t.bytes;
    bool start = true;
    for (char& c : s) {
      if (c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || std::isspace(static_cast<unsigned char>(c))) {
        start = true;
        continue;
      }
      c = static_cast<char>(start ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
      start = false;
    }
    return Value(Text::derived(std::move(s), t.has_data()));
  }
  if (name == "replace") {
    Text t = str_of(v);
    const Value* c = p(3, "count");
    Text to = str_of(need(a, 2, "new", name));
    return Value(replace(rt, t, str_of(need(a, 1, "old", name)).bytes, to, c && !c->is_none() ? need_int(*c, "count") : -1));
  }
  if (name == "join") {
    const Value* sep = p(1, "d");
    return Value(join(rt, iterate(v), sep ? str_of(*sep) : Text(), p(2, "attribute")));
  }
  if (name == "first" || name == "last") {
    List l = iterate(v);
    if (l.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? l.front() : l.back();
  }
  if (name == "list") {
    List l = iterate(v);
    rt.charge(l.size() * sizeof(Value));
    return Value(std::move(l));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      List chars = iterate(v);
      Text out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out.append(it->text());
      return Value(std::move(out));
    }
    List l = iterate(v);
    std::reverse(l.begin(), l.end());
    return Value(std::move(l));
  }
  if (name == "items" || name == "dictsort") {
    if (v.is_undefined()) return Value(List{});
    if (!v.is_dict()) fail("can only " + name + " a mapping");
    List out;
    for (const auto& [k, x] : v.dict().items) out.push_back(Value::tuple(List{Value(k), x}));
    if (name == "dictsort") {
      const Value* cs = p(1, "case_sensitive");
      const Value* by = p(2, "by");
      const Value* rev = p(3, "reverse");
      size_t pos = by && by->is_string() && by->str() == "value" ? 1 : 0;
      bool case_sensitive = cs && cs->truthy();
      std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
        return order(x.list()[pos], y.list()[pos], case_sensitive) < 0;
      });
      if (rev && rev->truthy()) std::reverse(out.begin(), out.end());
    }
    return Value(std::move(out));
  }
  if (name == "sort") {
    List l = iterate(v);
    const Value* rev = p(1, "reverse");
    const Value* cs = p(2, "case_sensitive");
    const Value* attr = p(3, "attribute");
    bool case_sensitive = cs && cs->truthy();
    auto key = [&](const Value& x) { return attr && !attr->is_none() ? attr_path(x, *attr) : x; };
    std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) { return order(key(x), key(y), case_sensitive) < 0; });
    if (rev && rev->truthy()) std::reverse(l.begin(), l.end());
    return Value(std::move(l));
  }
  if (name == "unique") {
    List l = iterate(v), out;
    const Value* cs = p(1, "case_sensitive");
    const Value* attr = p(2, "attribute");
    bool case_sensitive = cs && cs->truthy();
    List seen;
    for (const Value& x : l) {
      Value k = attr && !attr->is_none() ? attr_path(x, *attr) : x;
      if (!case_sensitive && k.is_string()) k = Value(ascii_lower(k.str()));
      if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, k); })) continue;
      seen.push_back(k);
      out.push_back(x);
      rt.step();
    }
    return Value(std::move(out));
  }
  if (name == "min" || name == "max") {
    List l = iterate(v);
    if (l.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    const Value* cs = p(1, "case_sensitive");
    const Value* attr = p(2, "attribute");
    auto key = [&](const Value& x) { return attr && !attr->is_none() ? attr_path(x, *attr) : x; };
    size_t best = 0;
    for (size_t i = 1; i < l.size(); ++i) {
      int c = order(key(l[i]), key(l[best]), cs && cs->truthy());
      if (name == "min" ? c < 0 : c > 0) best = i;
    }
    return l[best];
  }
  if (name == "sum") {
    const Value* attr = p(1, "attribute");
    const Value* start = p(2, "start");
    Value total = start ? *start : Value(int64_t(0));
    for (const Value& x : iterate(v)) total = binary_op(rt, "+", total, attr && !attr->is_none() ? attr_path(x, *attr) : x);
    return total;
  }
  if (name == "map") {
    List out;
    if (!v.truthy()) return Value(std::move(out));
    const Value* attr = kwarg(a, "attribute");
    for (const Value& x : iterate(v)) {
      rt.step();
      if (attr) {
        Value r = attr_path(x, *attr);
        if (r.is_undefined())
          if (const Value* d = kwarg(a, "default")) r = *d;
        out.push_back(r);
      } else {
        if (a.pos.size() < 2) fail("map requires a filter name or attribute=");
        Args fa;
        fa.pos.push_back(x);
        for (size_t i = 2; i < a.pos.size(); ++i) fa.pos.push_back(a.pos[i]);
        fa.kw = a.kw;
        out.push_back(do_filter(rt, need_string(a.pos[1], "filter name"), fa));
      }
    }
    return Value(std::move(out));
  }
  if (name == "select" || name == "reject") {
    List out;
    if (!v.truthy()) return Value(std::move(out));
    for (const Value& x : iterate(v)) {
      rt.step();
      if (select_item(rt, x, a, 1) == (name == "select")) out.push_back(x);
    }
    return Value(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr") {
    const Value& attr = need(a, 1, "attribute", name);
    List out;
    if (!v.truthy()) return Value(std::move(out));
    for (const Value& x : iterate(v)) {
      rt.step();
      Value field = attr_path(x, attr);
      if (select_item(rt, field, a, 2) == (name == "selectattr")) out.push_back(x);
    }
    return Value(std::move(out));
  }
  if (name == "int") {
    const Value* dflt = p(1, "default");
    Value fallback = dflt ? *dflt : Value(int64_t(0));
    if (v.kind() == Value::Kind::Int || v.kind() == Value::Kind::Bool) return Value(v.as_int());
    if (v.kind() == Value::Kind::Float) {
      if (!std::isfinite(v.as_float()) || std::fabs(v.as_float()) > 9.2e18) return fallback;
      return Value(int64_t(v.as_float()));
    }
    if (v.is_string()) {
      std::string s = strip(v.text(), std::nullopt, true, true).bytes;
      char* end = nullptr;
      errno = 0;
      long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end && *end == 0 && errno == 0) return Value(int64_t(i));
      double f = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && *end == 0 && std::isfinite(f) && std::fabs(f) < 9.2e18) return Value(int64_t(f));
    }
    return fallback;
  }
  if (name == "float") {
    const Value* dflt = p(1, "default");
    Value fallback = dflt ? *dflt : Value(0.0);
    if (v.is_number()) return Value(v.as_float());
    if (v.is_string()) {
      std::string s = strip(v.text(), std::nullopt, true, true).bytes;
      char* end = nullptr;
      double f = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && *end == 0) return Value(f);
    }
    return fallback;
  }
  if (name == "abs") {
    if (v.kind() == Value::Kind::Float) return Value(std::fabs(v.as_float()));
    int64_t i = need_int(v, "abs() argument");
    if (i == INT64_MIN) fail("integer overflow");
    return Value(i < 0 ? -i : i);
  }
  if (name == "round") {
    const Value* prec = p(1, "precision");
    const Value* method = p(2, "method");
    if (!v.is_number()) fail("round() needs a number");
    return round_value(v.as_float(), prec ? need_int(*prec, "precision") : 0,
                       method ? need_string(*method, "method") : "common");
  }
  if (name == "indent") {
    const Value* width = p(1, "width");
    const Value* first = p(2, "first");
    const Value* blank = p(3, "blank");
    std::string ind = "    ";
    if (width) ind = width->is_string() ? width->str() : std::string(size_t(std::clamp<int64_t>(need_int(*width, "width"), 0, 256)), ' ');
    Text out = indent(str_of(v), ind, first && first->truthy(), blank && blank->truthy());
    rt.charge(out.bytes.size());
    return Value(std::move(out));
  }
  if (name == "wordcount") {
    const std::string s = str_of(v).bytes;
    int64_t n = 0;
    bool in = false;
    for (unsigned char c : s) {
      bool w = std::isalnum(c) || c == '_' || c >= 0x80;
      if (w && !in) ++n;
      in = w;
    }
    return Value(n);
  }
  if (name == "batch") {
    int64_t size = need_int(need(a, 1, "linecount", name), "linecount");
    if (size <= 0) fail("batch size must be positive");
    const Value* fill = p(2, "fill_with");
    List out, cur;
    for (const Value& x : iterate(v)) {
      cur.push_back(x);
      if (int64_t(cur.size()) == size) {
        out.push_back(Value(std::move(cur)));
        cur.clear();
      }
    }
    if (!cur.empty()) {
      if (fill && !fill->is_none())
        while (int64_t(cur.size()) < size) cur.push_back(*fill);
      out.push_back(Value(std::move(cur)));
    }
    return Value(std::move(out));
  }
  if (name == "center") {
    Text t = str_of(v);
    const Value* w = p(1, "width");
    int64_t width = std::min<int64_t>(w ? need_int(*w, "width") : 80, 1 << 20);
    int64_t len = int64_t(cp_count(t.bytes));
    if (width <= len) return Value(t);
    int64_t total = width - len, left = total / 2 + (total & width & 1);
    Text out(std::string(size_t(left), ' '));
    out.append(t);
    out.append(std::string(size_t(total - left), ' '));
    rt.charge(out.bytes.size());
    return Value(std::move(out));
  }
  if (name == "format") {
    // printf-style with %s and %d, as templates use it.
    Text fmt = str_of(v);
    Text out;
    size_t next = 1;
    for (size_t i = 0; i < fmt.bytes.size(); ++i) {
      char c = fmt.bytes[i];
      if (c != '%' || i + 1 >= fmt.bytes.size()) {
        out.append(fmt.substr(i, 1));
        continue;
      }
      char f = fmt.bytes[++i];
      if (f == '%') out.append("%");
      else if (f == 's' || f == 'd') {
        if (next >= a.pos.size()) fail("not enough arguments for format string");
        const Value& x = a.pos[next++];
        out.append(f == 'd' ? Value(need_int(x, "%d argument")).to_text() : str_of(x));
      } else {
        fail(std::string("unsupported format character '") + f + "'");
      }
    }
    rt.charge(out.bytes.size());
    return Value(std::move(out));
  }
  fail("no filter named '" + name + "'");
}

}  // namespace

std::vector<std::pair<std::string, std::shared_ptr<Function>>> global_functions() {
  std::vector<std::pair<std::string, std::shared_ptr<Function>>> g;
  g.emplace_back("range", make_fn("range", [](Runtime& rt, Args& a) -> Value {
    int64_t start = 0, stop, step = 1;
    if (a.pos.empty() || a.pos.size() > 3) fail("range expected 1 to 3 arguments");
    if (a.pos.size() == 1) {
      stop = need_int(a.pos[0], "range() argument");
    } else {
      start = need_int(a.pos[0], "range() argument");
      stop = need_int(a.pos[1], "range() argument");
      if (a.pos.size() == 3) step = need_int(a.pos[2], "range() argument");
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      rt.step();
      rt.charge(sizeof(Value));
      out.push_back(Value(i));
      if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
    }
    return Value(std::move(out));
  }));
  g.emplace_back("namespace", make_fn("namespace", [](Runtime&, Args& a) -> Value {
    Dict d;
    d.is_namespace = true;
    for (const Value& p : a.pos) {
      if (!p.is_dict()) fail("namespace() takes a mapping");
      for (const auto& [k, v] : p.dict().items) d.set(k, v);
    }
    for (const auto& [k, v] : a.kw) d.set(k, v);
    return Value(std::move(d));
  }));
  g.emplace_back("dict", make_fn("dict", [](Runtime&, Args& a) -> Value {
    Dict d;
    for (const auto& [k, v] : a.kw) d.set(k, v);
    return Value(std::move(d));
  }));
  g.emplace_back("raise_exception", make_fn("raise_exception", [](Runtime&, Args& a) -> Value {
    fail(a.pos.empty() ? std::string("raise_exception() called") : a.pos[0].to_text().bytes);
  }));
  g.emplace_back("strftime_now", make_fn("strftime_now", [](Runtime& rt, Args& a) -> Value {
    std::string fmt = need_string(need(a, 0, "format", "strftime_now"), "format");
    if (fmt.size() > 256) fail("strftime_now format too long");
    std::time_t t = rt.now();
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[1024];
    size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
    return Value(std::string(buf, n));
  }));
  return g;
}

}  // namespace omni::model::jinja
