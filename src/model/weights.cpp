#include "model/weights.h"

#include <functional>
#include <span>
#include <string>

namespace omni::model {
namespace {

// Looks tensors up in several files (the shards of one model), first match wins; `found_` is the
// file that held the tensor last looked up, so errors and data views refer to it.
class Binder {
 public:
  Binder(std::span<const gguf::File* const> files) : files_(files), found_(*files.front()) {}

  const gguf::TensorInfo* find(const std::string& name) {
    for (const gguf::File* f : files_)
      if (const gguf::TensorInfo* t = f->find_tensor(name)) {
        found_ = std::cref(*f);
        return t;
      }
    found_ = std::cref(*files_.front());
    return nullptr;
  }

  // A matrix of `rows` rows of `cols` elements.
  Result<kernels::WeightView> matrix(const std::string& name, uint64_t cols, uint64_t rows) {
    const gguf::TensorInfo* t = find(name);
    const gguf::File& file_ = found_.get();
    if (!t) return Error{ErrorCode::NotFound, file_.name() + ": tensor '" + name + "' is missing"};
    if (t->shape.size() != 2 || t->shape[0] != cols || t->shape[1] != rows)
      return Error{ErrorCode::Corruption, file_.name() + ": tensor '" + name + "' has shape " + shape_text(t->shape) +
                                              ", expected [" + std::to_string(cols) + ", " + std::to_string(rows) +
                                              "]"};
    if (!kernels::matmul_supports(t->type))
      return Error{ErrorCode::Corruption, file_.name() + ": tensor '" + name + "' has type " +
                                              gguf::tensor_type_name(t->type) + ", which the engine does not support"};
    return kernels::WeightView{t->type, static_cast<int64_t>(cols), static_cast<int64_t>(rows),
                               file_.tensor_data(*t).data()};
  }

  Result<VectorParam> vector(const std::string& name, uint64_t n) {
    const gguf::TensorInfo* t = find(name);
    const gguf::File& file_ = found_.get();
    if (!t) return Error{ErrorCode::NotFound, file_.name() + ": tensor '" + name + "' is missing"};
    if (t->n_elements != n)
      return Error{ErrorCode::Corruption, file_.name() + ": tensor '" + name + "' has " +
                                              std::to_string(t->n_elements) + " elements, expected " +
                                              std::to_string(n)};
    VectorParam v;
    if (t->type == gguf::TensorType::F32) {
      v.data = reinterpret_cast<const float*>(file_.tensor_data(*t).data());
      return v;
    }
    if (!kernels::matmul_supports(t->type) || n % gguf::tensor_type_traits(t->type)->block_size != 0)
      return Error{ErrorCode::InvalidArgument,
                   file_.name() + ": tensor '" + name + "' has unsupported type " + gguf::tensor_type_name(t->type)};
    v.owned.resize(n);
    kernels::dequantize_row_of({t->type, static_cast<int64_t>(n), 1, file_.tensor_data(*t).data()}, 0, v.owned.data());
    v.data = v.owned.data();
    return v;
  }

  Result<VectorParam> optional_vector(const std::string& name, uint64_t n) {
    if (!find(name)) return VectorParam{};
    return vector(name, n);
  }

  bool has(const std::string& name) { return find(name) != nullptr; }

 private:
  static std::string shape_text(const std::vector<uint64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }

  std::span<const gguf::File* const> files_;
  std::reference_wrapper<const gguf::File> found_;
};

#define OMNI_TRY_ASSIGN(target, expr) \
  do {                                \
    auto _r = (expr);                 \
    if (!_r) return _r.error();       \
    target = std::move(*_r);          \
  } while (0)

}  // namespace

Result<ModelWeights> ModelWeights::bind(const gguf::File& file, const ModelConfig& c, const LoadRange& range) {
  const gguf::File* files[] = {&file};
  return bind(files, c, range);
}

Result<ModelWeights> ModelWeights::bind(std::span<const gguf::File* const> files, const ModelConfig& c,
                                        const LoadRange& range) {
  if (files.empty()) return Error{ErrorCode::InvalidArgument, "no model files to bind tensors from"};
  const gguf::File& file = *files.front();
  Binder b(files);
  ModelWeights w;
  const uint32_t end = std::min(range.block_end, c.n_layer);
  if (range.block_begin > end) return Error{ErrorCode::InvalidArgument, "block range starts after it ends"};
  if (range.embeddings || range.head) OMNI_TRY_ASSIGN(w.token_embd, b.matrix("token_embd.weight", c.n_embd, c.n_vocab));
  if (range.head) {
    OMNI_TRY_ASSIGN(w.output_norm, b.vector("output_norm.weight", c.n_embd));
    const bool always_tied = c.arch == Architecture::Gemma || c.arch == Architecture::Gemma2;
    if (!always_tied && b.has("output.weight"))
      OMNI_TRY_ASSIGN(w.output, b.matrix("output.weight", c.n_embd, c.n_vocab));
    else
      w.output = w.token_embd;  // tied embeddings
  }
  OMNI_TRY_ASSIGN(w.rope_freqs, b.optional_vector("rope_freqs.weight", c.rope_dims / 2));

  w.blocks.resize(c.n_layer);
  for (uint32_t i = range.block_begin; i < end; ++i) {
    BlockWeights& l = w.blocks[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    OMNI_TRY_ASSIGN(l.attn_norm, b.vector(p + "attn_norm.weight", c.n_embd));
    if (c.arch == Architecture::Phi3) {
      OMNI_TRY_ASSIGN(l.wqkv, b.matrix(p + "attn_qkv.weight", c.n_embd, c.q_dim() + 2 * c.kv_dim()));
    } else {
      OMNI_TRY_ASSIGN(l.wq, b.matrix(p + "attn_q.weight", c.n_embd, c.q_dim()));
      OMNI_TRY_ASSIGN(l.wk, b.matrix(p + "attn_k.weight", c.n_embd, c.kv_dim()));
      OMNI_TRY_ASSIGN(l.wv, b.matrix(p + "attn_v.weight", c.n_embd, c.kv_dim()));
    }
    OMNI_TRY_ASSIGN(l.bq, b.optional_vector(p + "attn_q.bias", c.q_dim()));
    OMNI_TRY_ASSIGN(l.bk, b.optional_vector(p + "attn_k.bias", c.kv_dim()));
    OMNI_TRY_ASSIGN(l.bv, b.optional_vector(p + "attn_v.bias", c.kv_dim()));
    if (c.arch == Architecture::Qwen2 && !(l.bq && l.bk && l.bv))
      return Error{ErrorCode::Corruption,
                   file.name() + ": qwen2 block " + std::to_string(i) + " lacks its q/k/v biases"};
    if (c.arch == Architecture::Qwen3) {
      OMNI_TRY_ASSIGN(l.q_norm, b.vector(p + "attn_q_norm.weight", c.head_dim));
      OMNI_TRY_ASSIGN(l.k_norm, b.vector(p + "attn_k_norm.weight", c.head_dim));
    }
    OMNI_TRY_ASSIGN(l.wo, b.matrix(p + "attn_output.weight", c.q_dim(), c.n_embd));
    if (c.post_norms) OMNI_TRY_ASSIGN(l.attn_post_norm, b.vector(p + "post_attention_norm.weight", c.n_embd));
    OMNI_TRY_ASSIGN(l.ffn_norm, b.vector(p + "ffn_norm.weight", c.n_embd));
    if (c.arch == Architecture::Phi3) {
      OMNI_TRY_ASSIGN(l.w_up, b.matrix(p + "ffn_up.weight", c.n_embd, 2 * uint64_t{c.n_ff}));
    } else {
      OMNI_TRY_ASSIGN(l.w_gate, b.matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff));
      OMNI_TRY_ASSIGN(l.w_up, b.matrix(p + "ffn_up.weight", c.n_embd, c.n_ff));
    }
    OMNI_TRY_ASSIGN(l.w_down, b.matrix(p + "ffn_down.weight", c.n_ff, c.n_embd));
    if (c.post_norms) OMNI_TRY_ASSIGN(l.ffn_post_norm, b.vector(p + "post_ffw_norm.weight", c.n_embd));
  }
  return w;
}

}  // namespace omni::model
