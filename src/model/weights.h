// ModelWeights: views of a transformer's tensors inside a mapped GGUF file, checked against the
// ModelConfig (names, shapes, types).
//
// Nothing is copied: matrices are kernels::WeightView into the mapping, so the File must outlive the
// weights (Model keeps both together). Only the blocks in [block_begin, block_end) and, if asked,
// the embeddings and the output head are looked up, so a file holding just some blocks loads.
#pragma once

#include <span>
#include <vector>

#include "base/result.h"
#include "gguf/reader.h"
#include "kernels/matmul.h"
#include "model/config.h"

namespace omni::model {

// A 1-D f32 parameter (norm weight, bias): points into the file when stored as F32, else into
// `owned` after conversion.
struct VectorParam {
  const float* data = nullptr;
  std::vector<float> owned;
  explicit operator bool() const { return data != nullptr; }
};

struct BlockWeights {
  VectorParam attn_norm;
  kernels::WeightView wq, wk, wv;  // unused when wqkv is set
  kernels::WeightView wqkv;        // phi3: rows = q_dim + 2 * kv_dim
  VectorParam bq, bk, bv;          // qwen2
  VectorParam q_norm, k_norm;      // qwen3: per-head RMS norm over head_dim
  kernels::WeightView wo;
  VectorParam attn_post_norm;      // gemma2: on the attention output, before the residual add
  VectorParam ffn_norm;
  kernels::WeightView w_gate, w_up;  // phi3 has no gate: w_up has 2 * n_ff rows (gate first)
  kernels::WeightView w_down;
  VectorParam ffn_post_norm;       // gemma2: on the FFN output, before the residual add
};

struct LoadRange {
  uint32_t block_begin = 0;
  uint32_t block_end = UINT32_MAX;  // clamped to n_layer
  bool embeddings = true;           // token_embd (needed to embed tokens)
  bool head = true;                 // output_norm + output (or tied token_embd)
};

struct ModelWeights {
  kernels::WeightView token_embd;   // rows = n_vocab
  VectorParam output_norm;
  kernels::WeightView output;       // token_embd when the embeddings are tied (always for gemma,
                                    // gemma2, as in llama.cpp, which ignores an output.weight there)
  VectorParam rope_freqs;           // llama3-style per-frequency divisors, head_dim/2 values
  std::vector<BlockWeights> blocks; // n_layer entries; those outside the range are empty

  static Result<ModelWeights> bind(const gguf::File& file, const ModelConfig& config, const LoadRange& range);
  // The same across several files (a model's shards): each tensor is taken from the first file
  // that has it. All files must outlive the weights.
  static Result<ModelWeights> bind(std::span<const gguf::File* const> files, const ModelConfig& config,
                                   const LoadRange& range);
};

}  // namespace omni::model
