// Metadata values of a GGUF file: typed scalars, strings and (nested) arrays, and the ordered
// key -> value table that holds them.
//
// Values keep their exact GGUF type and bits (a u32 stays a u32, a float keeps its bits), so a file
// read and written again is the same bytes. Values own their storage: they outlive the file they
// were read from.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "gguf/types.h"

namespace omni::gguf {

class Value;

// A homogeneous array. Numeric and bool elements are kept as their little-endian bytes in `raw`;
// strings in `strings`; nested arrays in `arrays`. Exactly one of them is used, per elem_type.
struct Array {
  ValueType elem_type = ValueType::UINT8;
  std::vector<uint8_t> raw;
  std::vector<std::string> strings;
  std::vector<Array> arrays;

  size_t size() const;
  // Element i converted to the requested kind; nullopt if the element type does not convert
  // losslessly (a float is not an integer; a negative number is not unsigned).
  std::optional<int64_t> int_at(size_t i) const;
  std::optional<double> float_at(size_t i) const;

  // Whole-array conversions; nullopt if any element does not convert.
  std::optional<std::vector<float>> to_floats() const;
  std::optional<std::vector<int64_t>> to_ints() const;

  // Typed builders.
  template <class T>
  static Array of(ValueType type, const std::vector<T>& items) {
    Array a;
    a.elem_type = type;
    a.raw.resize(items.size() * sizeof(T));
    if (!items.empty()) std::memcpy(a.raw.data(), items.data(), a.raw.size());
    return a;
  }
  static Array of_strings(std::vector<std::string> items);

  bool operator==(const Array&) const = default;
};

class Value {
 public:
  static Value u8(uint8_t v) { return scalar(ValueType::UINT8, v); }
  static Value i8(int8_t v) { return scalar(ValueType::INT8, v); }
  static Value u16(uint16_t v) { return scalar(ValueType::UINT16, v); }
  static Value i16(int16_t v) { return scalar(ValueType::INT16, v); }
  static Value u32(uint32_t v) { return scalar(ValueType::UINT32, v); }
  static Value i32(int32_t v) { return scalar(ValueType::INT32, v); }
  static Value u64(uint64_t v) { return scalar(ValueType::UINT64, v); }
  static Value i64(int64_t v) { return scalar(ValueType::INT64, v); }
  static Value f32(float v) { return scalar(ValueType::FLOAT32, v); }
  static Value f64(double v) { return scalar(ValueType::FLOAT64, v); }
  static Value boolean(bool v) { return scalar(ValueType::BOOL, static_cast<uint8_t>(v ? 1 : 0)); }
  static Value string(std::string v);
  static Value array(Array v);
  // A scalar from its raw little-endian bytes (reader use); `type` must be a fixed-size type.
  static Value from_bits(ValueType type, uint64_t bits);

  ValueType type() const { return type_; }
  uint64_t bits() const { return bits_; }  // raw little-endian bits of a scalar

  // Any integer type (and bool) whose value fits; nullopt otherwise.
  std::optional<int64_t> as_int() const;
  std::optional<uint64_t> as_uint() const;
  // FLOAT32/FLOAT64, and integers (converted).
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;
  const Array* as_array() const;

  // Human-readable rendering; arrays longer than `max_items` are elided.
  std::string to_display(size_t max_items = 8) const;

  bool operator==(const Value& other) const;

 private:
  template <class T>
  static Value scalar(ValueType type, T v) {
    Value out;
    out.type_ = type;
    std::memcpy(&out.bits_, &v, sizeof(T));
    return out;
  }

  ValueType type_ = ValueType::UINT8;
  uint64_t bits_ = 0;
  std::string string_;
  std::shared_ptr<const Array> array_;  // immutable once built, so copies may share it
};

// Ordered key -> value table. Keys are unique; insertion order is file order.
class Metadata {
 public:
  struct Entry {
    std::string key;
    Value value;
  };

  // Sets `key` (replacing the value in place if the key exists, else appending).
  void set(std::string key, Value value);
  bool erase(std::string_view key);
  const Value* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  // Typed look-ups whose errors say which key is missing or of the wrong type.
  Result<std::string> get_string(std::string_view key) const;
  Result<uint64_t> get_uint(std::string_view key) const;
  Result<double> get_float(std::string_view key) const;
  Result<bool> get_bool(std::string_view key) const;
  Result<const Array*> get_array(std::string_view key) const;

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace omni::gguf
