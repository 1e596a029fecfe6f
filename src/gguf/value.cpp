#include "gguf/value.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace omni::gguf {
namespace {

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Integer value of a fixed-size scalar given its raw bits; nullopt for floats.
// `as_unsigned` distinguishes a u64 above INT64_MAX from a negative i64.
struct IntValue {
  bool negative;
  uint64_t magnitude;  // |v|
};

std::optional<IntValue> integer_of(ValueType type, const uint8_t* p) {
  auto s = [](int64_t v) { return IntValue{v < 0, v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v)}; };
  auto u = [](uint64_t v) { return IntValue{false, v}; };
  switch (type) {
    case ValueType::UINT8: return u(load<uint8_t>(p));
    case ValueType::INT8: return s(load<int8_t>(p));
    case ValueType::UINT16: return u(load<uint16_t>(p));
    case ValueType::INT16: return s(load<int16_t>(p));
    case ValueType::UINT32: return u(load<uint32_t>(p));
    case ValueType::INT32: return s(load<int32_t>(p));
    case ValueType::UINT64: return u(load<uint64_t>(p));
    case ValueType::INT64: return s(load<int64_t>(p));
    case ValueType::BOOL: return u(load<uint8_t>(p) != 0);
    default: return std::nullopt;
  }
}

std::optional<int64_t> to_int64(std::optional<IntValue> v) {
  if (!v) return std::nullopt;
  if (v->negative) {
    if (v->magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) return std::nullopt;
    return static_cast<int64_t>(0 - v->magnitude);
  }
  if (v->magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(v->magnitude);
}

std::optional<double> float_of(ValueType type, const uint8_t* p) {
  if (type == ValueType::FLOAT32) return load<float>(p);
  if (type == ValueType::FLOAT64) return load<double>(p);
  auto i = integer_of(type, p);
  if (!i) return std::nullopt;
  double m = static_cast<double>(i->magnitude);
  return i->negative ? -m : m;
}

std::string scalar_display(ValueType type, const uint8_t* p) {
  std::ostringstream out;
  if (type == ValueType::BOOL) return load<uint8_t>(p) ? "true" : "false";
  if (type == ValueType::FLOAT32 || type == ValueType::FLOAT64) {
    out.precision(type == ValueType::FLOAT32 ? 9 : 17);
    out << *float_of(type, p);
    return out.str();
  }
  auto i = integer_of(type, p);
  if (i->negative) out << '-';
  out << i->magnitude;
  return out.str();
}

void quote_into(std::ostringstream& out, const std::string& s) {
  out << '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out << '\\' << c;
    } else if (c == '\n') {
      out << "\\n";
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      out << "\\x" << hex[c >> 4] << hex[c & 15];
    } else {
      out << c;
    }
  }
  out << '"';
}

void array_display(std::ostringstream& out, const Array& a, size_t max_items) {
  out << '[';
  size_t n = a.size();
  size_t shown = std::min(n, max_items);
  uint32_t width = value_type_size(static_cast<uint32_t>(a.elem_type)).value_or(0);
  for (size_t i = 0; i < shown; ++i) {
    if (i) out << ", ";
    if (a.elem_type == ValueType::STRING) {
      quote_into(out, a.strings[i]);
    } else if (a.elem_type == ValueType::ARRAY) {
      array_display(out, a.arrays[i], max_items);
    } else {
      out << scalar_display(a.elem_type, a.raw.data() + i * width);
    }
  }
  if (shown < n) out << ", ... (" << n << " items)";
  out << ']';
}

}  // namespace

size_t Array::size() const {
  if (elem_type == ValueType::STRING) return strings.size();
  if (elem_type == ValueType::ARRAY) return arrays.size();
  uint32_t width = value_type_size(static_cast<uint32_t>(elem_type)).value_or(1);
  return raw.size() / width;
}

std::optional<int64_t> Array::int_at(size_t i) const {
  if (i >= size() || elem_type == ValueType::STRING || elem_type == ValueType::ARRAY) return std::nullopt;
  uint32_t width = *value_type_size(static_cast<uint32_t>(elem_type));
  return to_int64(integer_of(elem_type, raw.data() + i * width));
}

std::optional<double> Array::float_at(size_t i) const {
  if (i >= size() || elem_type == ValueType::STRING || elem_type == ValueType::ARRAY) return std::nullopt;
  uint32_t width = *value_type_size(static_cast<uint32_t>(elem_type));
  return float_of(elem_type, raw.data() + i * width);
}

std::optional<std::vector<float>> Array::to_floats() const {
  std::vector<float> out(size());
  for (size_t i = 0; i < out.size(); ++i) {
    auto v = float_at(i);
    if (!v) return std::nullopt;
    out[i] = static_cast<float>(*v);
  }
  return out;
}

std::optional<std::vector<int64_t>> Array::to_ints() const {
  std::vector<int64_t> out(size());
  for (size_t i = 0; i < out.size(); ++i) {
    auto v = int_at(i);
    if (!v) return std::nullopt;
    out[i] = *v;
  }
  return out;
}

Array Array::of_strings(std::vector<std::string> items) {
  Array a;
  a.elem_type = ValueType::STRING;
  a.strings = std::move(items);
  return a;
}

Value Value::string(std::string v) {
  Value out;
  out.type_ = ValueType::STRING;
  out.string_ = std::move(v);
  return out;
}

Value Value::array(Array v) {
  Value out;
  out.type_ = ValueType::ARRAY;
  out.array_ = std::make_shared<const Array>(std::move(v));
  return out;
}

Value Value::from_bits(ValueType type, uint64_t bits) {
  Value out;
  out.type_ = type;
  out.bits_ = bits;
  return out;
}

std::optional<int64_t> Value::as_int() const {
  return to_int64(integer_of(type_, reinterpret_cast<const uint8_t*>(&bits_)));
}

std::optional<uint64_t> Value::as_uint() const {
  auto i = integer_of(type_, reinterpret_cast<const uint8_t*>(&bits_));
  if (!i || i->negative) return std::nullopt;
  return i->magnitude;
}

std::optional<double> Value::as_float() const {
  return float_of(type_, reinterpret_cast<const uint8_t*>(&bits_));
}

std::optional<bool> Value::as_bool() const {
  if (type_ != ValueType::BOOL) return std::nullopt;
  return bits_ != 0;
}

const std::string* Value::as_string() const {
  return type_ == ValueType::STRING ? &string_ : nullptr;
}

const Array* Value::as_array() const {
  return type_ == ValueType::ARRAY ? array_.get() : nullptr;
}

std::string Value::to_display(size_t max_items) const {
  std::ostringstream out;
  if (type_ == ValueType::STRING) {
    quote_into(out, string_);
  } else if (type_ == ValueType::ARRAY) {
    array_display(out, *array_, max_items);
  } else {
    return scalar_display(type_, reinterpret_cast<const uint8_t*>(&bits_));
  }
  return out.str();
}

bool Value::operator==(const Value& other) const {
  if (type_ != other.type_) return false;
  if (type_ == ValueType::STRING) return string_ == other.string_;
  if (type_ == ValueType::ARRAY) return *array_ == *other.array_;
  return bits_ == other.bits_;
}

void Metadata::set(std::string key, Value value) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].value = std::move(value);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.push_back({std::move(key), std::move(value)});
}

bool Metadata::erase(std::string_view key) {
  auto it = index_.find(std::string(key));
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].key, i);
  return true;
}

const Value* Metadata::find(std::string_view key) const {
  auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].value;
}

namespace {
Error missing(std::string_view key) {
  return Error{ErrorCode::NotFound, "metadata key '" + std::string(key) + "' is missing"};
}
Error wrong_type(std::string_view key, const Value& v, std::string_view wanted) {
  return Error{ErrorCode::Corruption, "metadata key '" + std::string(key) + "' has type " +
               std::string(value_type_name(v.type())) + ", expected " + std::string(wanted)};
}
}  // namespace

Result<std::string> Metadata::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return missing(key);
  if (!v->as_string()) return wrong_type(key, *v, "string");
  return *v->as_string();
}

Result<uint64_t> Metadata::get_uint(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return missing(key);
  auto u = v->as_uint();
  if (!u || v->type() == ValueType::BOOL) return wrong_type(key, *v, "a non-negative integer");
  return *u;
}

Result<double> Metadata::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return missing(key);
  auto f = v->as_float();
  if (!f || v->type() == ValueType::BOOL) return wrong_type(key, *v, "a number");
  return *f;
}

Result<bool> Metadata::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return missing(key);
  auto b = v->as_bool();
  if (!b) return wrong_type(key, *v, "bool");
  return *b;
}

Result<const Array*> Metadata::get_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return missing(key);
  if (!v->as_array()) return wrong_type(key, *v, "array");
  return v->as_array();
}

}  // namespace omni::gguf
