// quantize_model: converts a GGUF model's weight matrices to another block format, as llama.cpp's
// llama-quantize does without an importance matrix.
//
// Matrices (tensors of 2+ dimensions named *.weight) are converted; norms, biases and other 1-D
// tensors stay F32. A matrix whose rows are not a whole number of the target's blocks is written as
// F16 instead (as llama-quantize falls back). Metadata is copied with general.file_type updated.
// Data is streamed tensor by tensor: memory use is a few rows, whatever the model size. The output
// is written atomically (see gguf::Writer). Errors name the file and tensor: unsupported source or
// target types, unreadable input, a full disk.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "gguf/types.h"

namespace omni::model {

struct QuantizeReport {
  uint64_t tensors = 0;
  uint64_t converted = 0;  // matrices written in the target type
  uint64_t fallbacks = 0;  // matrices written as F16 because of their row length
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
};

// Supported sources: F32, F16, BF16 tensors. Targets: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, gguf::TensorType target);

}  // namespace omni::model
