// ModelConfig: the hyper-parameters of a transformer, read from GGUF metadata.
//
// Supported architectures are listed in `supported_architectures()`; anything else, or a missing or
// inconsistent hyper-parameter, is an Error that names the key or the architecture. gemma2 needs
// gemma2.attn_logit_softcapping, gemma2.final_logit_softcapping and gemma2.attention.sliding_window
// (the converter always writes them; llama.cpp would silently assume 50, 30 and 4096).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "gguf/value.h"

namespace omni::model {

enum class Architecture { Llama, Qwen2, Qwen3, Phi3, Gemma, Gemma2 };

// How RoPE pairs the dimensions of a head: adjacent pairs (x0,x1),(x2,x3)… (llama) or the two halves
// (x_i, x_{i+n/2}) (GPT-NeoX style: qwen2, qwen3, phi3, gemma, gemma2).
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
  bool scale_embeddings = false;  // gemma, gemma2 multiply embeddings by sqrt(n_embd)

  // Attention scores are (q . k) * attn_scale. With scale_query the query itself is multiplied
  // before attention (phi3, gemma, gemma2, as llama.cpp does): the order matters because the query
  // is rounded to F16 next.
  float attn_scale = 0;
  bool scale_query = false;

  // gemma2 (0 / false elsewhere):
  float attn_softcap = 0;   // attn_logit_softcapping: scores = cap * tanh(scores / cap) before softmax
  float final_softcap = 0;  // final_logit_softcapping: the same on the output logits
  bool post_norms = false;  // RMS norms on the attention and FFN outputs before their residual adds
  uint32_t sliding_window = 0;  // attention.sliding_window: a token sees the last `sliding_window`
                                // positions (itself included) in sliding-window layers
  uint32_t swa_period = 0;      // layer il slides when il % swa_period < swa_period - 1
  float rope_base_swa = 0;      // rope.freq_base_swa: RoPE base of sliding-window layers

  // Whether block `layer` (global index) attends through the sliding window.
  bool is_sliding(uint32_t layer) const {
    return sliding_window != 0 && (swa_period == 0 || layer % swa_period < swa_period - 1);
  }

  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t kv_dim() const { return n_head_kv * head_dim; }

  static Result<ModelConfig> from_metadata(const gguf::Metadata& md);
};

std::vector<std::string> supported_architectures();

}  // namespace omni::model
