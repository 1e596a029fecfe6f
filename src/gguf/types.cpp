#include "gguf/types.h"

#include <array>
#include <cctype>
#include <string>

namespace omni::gguf {
namespace {

struct Entry {
  uint32_t id;
  TensorTypeTraits traits;
};

// Block layouts as ggml defines them (ggml-common.h); QK_K = 256.
constexpr std::array kTensorTypes = {
    Entry{0, {"f32", 1, 4, false}},        Entry{1, {"f16", 1, 2, false}},
    Entry{2, {"q4_0", 32, 18, true}},      Entry{3, {"q4_1", 32, 20, true}},
    Entry{6, {"q5_0", 32, 22, true}},      Entry{7, {"q5_1", 32, 24, true}},
    Entry{8, {"q8_0", 32, 34, true}},      Entry{9, {"q8_1", 32, 36, true}},
    Entry{10, {"q2_k", 256, 84, true}},    Entry{11, {"q3_k", 256, 110, true}},
    Entry{12, {"q4_k", 256, 144, true}},   Entry{13, {"q5_k", 256, 176, true}},
    Entry{14, {"q6_k", 256, 210, true}},   Entry{15, {"q8_k", 256, 292, true}},
    Entry{16, {"iq2_xxs", 256, 66, true}}, Entry{17, {"iq2_xs", 256, 74, true}},
    Entry{18, {"iq3_xxs", 256, 98, true}}, Entry{19, {"iq1_s", 256, 50, true}},
    Entry{20, {"iq4_nl", 32, 18, true}},   Entry{21, {"iq3_s", 256, 110, true}},
    Entry{22, {"iq2_s", 256, 82, true}},   Entry{23, {"iq4_xs", 256, 136, true}},
    Entry{24, {"i8", 1, 1, false}},        Entry{25, {"i16", 1, 2, false}},
    Entry{26, {"i32", 1, 4, false}},       Entry{27, {"i64", 1, 8, false}},
    Entry{28, {"f64", 1, 8, false}},       Entry{29, {"iq1_m", 256, 56, true}},
    Entry{30, {"bf16", 1, 2, false}},      Entry{34, {"tq1_0", 256, 54, true}},
    Entry{35, {"tq2_0", 256, 66, true}},   Entry{39, {"mxfp4", 32, 17, true}},
};

}  // namespace

std::optional<TensorTypeTraits> tensor_type_traits(uint32_t type) {
  for (const auto& e : kTensorTypes)
    if (e.id == type) return e.traits;
  return std::nullopt;
}

std::optional<TensorType> tensor_type_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& e : kTensorTypes)
    if (e.traits.name == lower) return static_cast<TensorType>(e.id);
  return std::nullopt;
}

std::string tensor_type_name(TensorType type) {
  if (auto t = tensor_type_traits(type)) return std::string(t->name);
  return "unknown(" + std::to_string(static_cast<uint32_t>(type)) + ")";
}

std::optional<uint64_t> row_bytes(TensorType type, uint64_t n_elements) {
  auto t = tensor_type_traits(type);
  if (!t || n_elements % t->block_size != 0) return std::nullopt;
  return n_elements / t->block_size * t->type_size;
}

std::optional<uint32_t> value_type_size(uint32_t type) {
  switch (static_cast<ValueType>(type)) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    case ValueType::STRING: case ValueType::ARRAY: return 0;
  }
  return std::nullopt;
}

std::string_view value_type_name(ValueType type) {
  switch (type) {
    case ValueType::UINT8: return "u8";
    case ValueType::INT8: return "i8";
    case ValueType::UINT16: return "u16";
    case ValueType::INT16: return "i16";
    case ValueType::UINT32: return "u32";
    case ValueType::INT32: return "i32";
    case ValueType::FLOAT32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "u64";
    case ValueType::INT64: return "i64";
    case ValueType::FLOAT64: return "f64";
  }
  return "unknown";
}

}  // namespace omni::gguf
