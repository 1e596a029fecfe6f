// ModelConfig: the hyper-parameters of a transformer, read from GGUF metadata.
//
// Supported architectures are listed in `supported_architectures()`; anything else, or a missing or
// inconsistent hyper-parameter, is an Error that names the key or the architecture.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "gguf/value.h"

namespace omni::model {

enum class Architecture { Llama, Qwen2, Qwen3, Phi3, Gemma };

// How RoPE pairs the dimensions of a head: adjacent pairs (x0,x1),(x2,x3)… (llama) or the two halves
// (x_i, x_{i+n/2}) (GPT-NeoX style: qwen2, qwen3, phi3, gemma).
enum class RopeStyle { Adjacent, Halves };

enum class FfnActivation { SiluGated, GeluGated };

struct ModelConfig {
  Architecture arch = Architecture::Llama;
  std::string arch_name;
  uint32_t n_embd = 0;
  uint32_t n_layer = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;    // attention.key_length, default n_embd / n_head
  uint32_t n_ff = 0;
  uint32_t n_vocab = 0;
  uint32_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  uint32_t rope_dims = 0;   // leading dimensions of each head that are rotated
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  RopeStyle rope_style = RopeStyle::Adjacent;
  FfnActivation activation = FfnActivation::SiluGated;
  bool scale_embeddings = false;  // gemma multiplies embeddings by sqrt(n_embd)

  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t kv_dim() const { return n_head_kv * head_dim; }

  static Result<ModelConfig> from_metadata(const gguf::Metadata& md);
};

std::vector<std::string> supported_architectures();

}  // namespace omni::model
