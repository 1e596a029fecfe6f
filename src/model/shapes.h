// Shapes of real models: every hyper-parameter a GGUF of the model carries, the tensors it holds
// (llama.cpp's names, ggml's dimension order, the converter's file order) and its metadata keys.
//
// Used by `omni synth` to write synthetic models indistinguishable in structure from converted
// ones, and by tests and planners that need real sizes (a 70B's tensor table) without the weights.
// The table is static; a Shape returned by find_shape lives for the whole program.
//
// Tensor order is the order llama.cpp's convert_hf_to_gguf.py writes for a checkpoint stored as one
// safetensors file: extra generated tensors first (rope_freqs.weight), then the Hugging Face
// tensors sorted by their HF names as strings — so output.weight (lm_head) comes first when
// present, each block's tensors come as attn_norm, ffn_down, ffn_gate, ffn_up, ffn_norm, attn_k,
// attn_output, attn_q, attn_v (biases before their weights), blocks in string order (blk.0,
// blk.1, blk.10, blk.11, ..., blk.2, ...), and output_norm.weight last. Readers must not rely on
// tensor order; real files differ (sharded checkpoints, llama-quantize mixes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "gguf/value.h"

namespace omni::model {

// Llama 3 RoPE frequency scaling (rope_scaling.rope_type == "llama3" in config.json). GGUF carries
// it as the rope_freqs.weight tensor, not as metadata.
struct Llama3RopeScaling {
  float factor = 0;
  float low_freq_factor = 0;
  float high_freq_factor = 0;
  uint32_t original_context_length = 0;
};

struct Shape {
  std::string name;          // table key, e.g. "tinyllama-1.1b"
  std::string arch;          // general.architecture: "llama", "qwen2"
  std::string display_name;  // general.name, e.g. "TinyLlama 1.1B"
  std::string basename;      // general.basename
  std::string size_label;    // general.size_label, e.g. "1.1B"
  uint32_t n_layer = 0;      // block_count
  uint32_t n_embd = 0;       // embedding_length
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t n_ff = 0;         // feed_forward_length
  uint32_t n_vocab = 0;      // rows of token_embd
  uint32_t n_ctx = 0;        // context_length (max_position_embeddings)
  uint32_t head_dim = 0;     // n_embd / n_head, except where config.json says otherwise (qwen3, gemma2)
  bool head_dim_in_config = false;  // config.json states head_dim: the converter writes key/value_length
  float rope_freq_base = 0;
  float rms_eps = 0;
  bool tied_embeddings = false;  // no output.weight: the output projection reuses token_embd
  bool qkv_bias = false;         // attn_q/k/v.bias (qwen2)
  bool qk_norm = false;          // attn_q_norm / attn_k_norm per block, head_dim values (qwen3)
  bool post_norms = false;       // post_attention_norm / post_ffw_norm per block (gemma2)
  float attn_softcap = 0;        // gemma2: attn_logit_softcapping
  float final_softcap = 0;       // gemma2: final_logit_softcapping
  uint32_t sliding_window = 0;   // gemma2: attention.sliding_window
  std::optional<Llama3RopeScaling> llama3_rope;
  // Standard deviation of synthetic token_embd weights (model/synth.h). Tied output heads multiply
  // hidden states of RMS about 1 by these rows, so logits have a spread of about std * sqrt(n_embd):
  // the shapes with tied embeddings and wide hidden states use a smaller std so that the synthetic
  // model's log-probs stay graded (a saturated softmax would make reference comparisons measure
  // rounding noise). The gemmas also scale embeddings by sqrt(n_embd) on input.
  float synth_embd_std = 0.3f;
};

// All shapes, in a stable order. Names ending in "-tiny" are not real models: real architectures
// at toy size (256-wide, 4096 tokens, a few million parameters), cheap enough to synthesize inside
// a unit test.
const std::vector<Shape>& shapes();
// The shape called `name`, or nullptr.
const Shape* find_shape(std::string_view name);

// A test shape given by a spec rather than a table entry, for differential tests over many random
// shapes (scripts/parity/differential.py):
//   "custom:arch=qwen2,layers=3,embd=256,heads=4,kv_heads=1,head_dim=128,ff=512,vocab=4096,tied=1"
// with optional embd_std, window (gemma2's sliding window, default 32), ctx (default 4096) and
// rope_base. Required: arch (llama, qwen2, qwen3, gemma, gemma2), layers, embd, heads, ff, vocab;
// kv_heads defaults to heads, head_dim to embd / heads, tied to 0 (gemma and gemma2 are always
// tied). The architecture fixes the rest as in its tiny shape: qwen2's q/k/v biases, qwen3's q/k
// norms, gemma2's post-norms and soft-caps 50 / 30. The Shape's name is the spec itself, so a
// report or a GGUF's description says how to make the model again. Errors (InvalidArgument) name
// the bad key or value.
Result<Shape> custom_shape(std::string_view spec);
// The table's shape called `name`, or custom_shape(name) for a "custom:" spec; NotFound otherwise.
Result<Shape> resolve_shape(std::string_view name_or_spec);

enum class TensorRole {
  TokenEmbedding,  // token_embd.weight
  Output,          // output.weight
  Norm,            // *_norm.weight
  Weight,          // other 2-D weight matrices
  Bias,            // attn_*.bias
  RopeFreqs,       // rope_freqs.weight (computed, not random)
};

struct TensorLayout {
  std::string name;
  std::vector<uint64_t> shape;  // ne[0] (input dimension, contiguous) first
  TensorRole role = TensorRole::Weight;
  uint64_t n_elements() const;
  // 2-D weights take the file's chosen type; norms, biases and rope_freqs stay F32 (as llama.cpp's
  // converter and quantizer keep them).
  bool is_matrix() const { return shape.size() == 2; }
};

// The tensors of `shape` in file order, with `n_layer` blocks and `n_vocab` embedding rows.
std::vector<TensorLayout> tensor_layout(const Shape& shape, uint32_t n_layer, uint32_t n_vocab);
inline std::vector<TensorLayout> tensor_layout(const Shape& shape) {
  return tensor_layout(shape, shape.n_layer, shape.n_vocab);
}
uint64_t parameter_count(const std::vector<TensorLayout>& layout);

// rope_freqs.weight of a shape with llama3_rope: head_dim/2 frequency divisors computed by the
// llama3 rule exactly as convert_hf_to_gguf.py computes them (float32 arithmetic). Empty otherwise.
std::vector<float> llama3_rope_factors(const Shape& shape);

// llama_ftype number (general.file_type) of a model whose matrices are `type`; nullopt for types
// without a "mostly" file type here.
std::optional<uint32_t> file_type_of(gguf::TensorType type);

// A quantization mix: llama.cpp's llama_ftype (the value is general.file_type). The single-type
// mixes put every matrix in one type (except that the quantized ones give output.weight Q6_K, as
// llama-quantize does); the K mixes choose per tensor (mix_tensor_types).
enum class Mix : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q2_K = 10,
  Q3_K_S = 11,
  Q3_K_M = 12,
  Q3_K_L = 13,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_S = 16,
  Q5_K_M = 17,
  Q6_K = 18,
  BF16 = 32,
};

// "q4_k_m", "Q8_0", ...; also llama-quantize's aliases q3_k, q4_k, q5_k (the _M mixes). nullopt if
// unknown.
std::optional<Mix> mix_from_name(std::string_view name);
std::string mix_name(Mix mix);             // lower case: "q4_k_m"
std::string mix_names_text();              // "f32, f16, ..., q6_k" for messages
gguf::TensorType mix_base_type(Mix mix);   // llama-quantize's default_type
inline uint32_t file_type_of(Mix mix) { return static_cast<uint32_t>(mix); }
// The mix whose base type is `type` and which has that name (f32 ... q5_1, q2_k, q6_k); nullopt for
// q3_k, q4_k, q5_k (which need a mix name) and unsupported types.
std::optional<Mix> mix_of(gguf::TensorType type);

// What llama_tensor_get_type needs to know about the model.
struct MixModel {
  std::string arch;       // general.architecture
  uint32_t n_layer = 0;   // <arch>.block_count
  uint32_t n_head = 0;    // <arch>.attention.head_count
  uint32_t n_head_kv = 0; // <arch>.attention.head_count_kv (0: = n_head)
  uint32_t n_expert = 0;  // <arch>.expert_count
};

// A tensor llama-quantize would quantize: a *.weight of 2+ dimensions (not a norm).
struct MixTensor {
  std::string name;
  uint64_t ne0 = 0;  // row length
};

struct MixChoice {
  gguf::TensorType type = gguf::TensorType::F32;
  bool fallback = false;  // the row length did not fit the chosen type (llama.cpp's fallback chain)
};

// The type llama.cpp's llama_tensor_get_type (without an importance matrix or overrides) gives each
// tensor of `tensors` (all the model's quantizable matrices, in any order) under `mix`; results in
// the order of `tensors`. Per-layer rules count attn_v / ffn_down tensors in llama.cpp's order
// (by block number, then name). Deviation: llama.cpp's fallback for Q2_K/Q3_K rows that are not a
// multiple of 256 is IQ4_NL, which we cannot write; we use Q4_0 (same block size). Rows that fit no
// quantized fallback become F16 (llama.cpp refuses them for the legacy mixes).
std::vector<MixChoice> mix_tensor_types(Mix mix, const MixModel& model, const std::vector<MixTensor>& tensors);

// Appends the hyper-parameter keys in the converter's order, with general.file_type where the
// converter puts it. Keys are the ones the converter writes for the shape's architecture (llama
// adds vocab_size and rope.dimension_count; qwen2 and qwen3 do not; gemma and gemma2 write no
// rope.freq_base, always key/value_length, and gemma2 its soft-caps and sliding window).
void add_hparams(gguf::Metadata& md, const Shape& shape, uint32_t n_layer, uint32_t n_vocab, uint32_t file_type);

}  // namespace omni::model
