// quantize_model: converts a GGUF model's weight matrices to another block format, as llama.cpp's
// llama-quantize does without an importance matrix.
//
// Matrices (tensors of 2+ dimensions named *.weight, not *_norm.weight) are converted; norms, biases
// and other 1-D tensors are copied. Each matrix gets the type llama.cpp's llama_tensor_get_type
// chooses for the mix (model/shapes.h, mix_tensor_types): output.weight Q6_K in the quantized mixes,
// more bits for some attn_v / ffn_down layers in the _M mixes, and so on; a matrix whose rows do not
// fit its type falls back as llama.cpp does (finally F16). Metadata is copied with general.file_type
// set to the mix's llama_ftype.
// Data is streamed tensor by tensor: memory use is a few rows, whatever the model size. The output
// is written atomically (see gguf::Writer). Errors name the file and tensor: unsupported source or
// target types, unreadable input, a full disk.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "gguf/types.h"
#include "model/shapes.h"

namespace omni::model {

struct QuantizeReport {
  uint64_t tensors = 0;
  uint64_t converted = 0;  // matrices written in the type the mix chose for them
  uint64_t fallbacks = 0;  // matrices written in a fallback type because of their row length
  uint64_t input_bytes = 0;
  uint64_t output_bytes = 0;
};

// Supported sources: F32, F16, BF16 tensors. Mixes: all of model::Mix (f32 ... q6_k).
Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, Mix mix);
// The mix named by a tensor type (mix_of): F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q6_K.
Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, gguf::TensorType target);

}  // namespace omni::model
