// Tensor element types and metadata value types of the GGUF format, with their sizes.
//
// TensorType numbers are ggml's `enum ggml_type`, as stored in GGUF tensor infos. A tensor's row is
// a whole number of blocks: `block_size` elements stored in `type_size` bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace omni::gguf {

enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3,
  Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct TensorTypeTraits {
  std::string_view name;  // ggml's lower-case name, e.g. "q4_k"
  uint32_t block_size;    // elements per block
  uint32_t type_size;     // bytes per block
  bool quantized;
};

// Traits of `type`, or nullopt for a number that is not a known tensor type.
std::optional<TensorTypeTraits> tensor_type_traits(uint32_t type);
inline std::optional<TensorTypeTraits> tensor_type_traits(TensorType type) {
  return tensor_type_traits(static_cast<uint32_t>(type));
}
// "q8_0" -> Q8_0 (case-insensitive); nullopt if unknown.
std::optional<TensorType> tensor_type_from_name(std::string_view name);
// The name of a known type ("f32"); "unknown(N)" otherwise.
std::string tensor_type_name(TensorType type);

// Bytes of one row of `n_elements` of `type`; nullopt if the type is unknown or n_elements is not a
// multiple of its block size.
std::optional<uint64_t> row_bytes(TensorType type, uint64_t n_elements);

enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// Size in bytes of a fixed-size value type; 0 for STRING and ARRAY; nullopt for unknown numbers.
std::optional<uint32_t> value_type_size(uint32_t type);
std::string_view value_type_name(ValueType type);

}  // namespace omni::gguf
