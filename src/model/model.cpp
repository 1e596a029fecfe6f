#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/f16_rows.h"
#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"

namespace omni::model {
namespace {

void to_fp16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = kernels::fp32_to_fp16(src[i]);
}

// x = cap * tanh(x / cap) (gemma2's soft-capping), computed as ggml does: multiply by the f32
// reciprocal, tanhf, multiply back.
void soft_cap(float* x, size_t n, float cap) {
  const float inv = 1.0f / cap;
  for (size_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] * inv) * cap;
}

// The first position that a token at `pos` sees: 0, or in a sliding-window layer the oldest of the
// last `window` positions (llama.cpp masks key position p0 when pos - p0 >= window).
uint32_t first_visible(bool sliding, uint32_t window, uint32_t pos) {
  return sliding && pos + 1 > window ? pos + 1 - window : 0;
}

}  // namespace

Result<std::unique_ptr<Model>> Model::load(const std::string& path, const LoadRange& range) {
  auto file = gguf::File::open(path);
  if (!file) return file.error();
  return from_file(std::move(*file), range);
}

Result<std::unique_ptr<Model>> Model::from_file(gguf::File file, const LoadRange& range) {
  std::vector<gguf::File> files;
  files.push_back(std::move(file));
  return from_files(std::move(files), range);
}

Result<std::unique_ptr<Model>> Model::from_files(std::vector<gguf::File> files, const LoadRange& range) {
  if (files.empty()) return Error{ErrorCode::InvalidArgument, "no model files given"};
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(files.front());
  for (size_t i = 1; i < files.size(); ++i) m->more_files_.push_back(std::move(files[i]));
  std::vector<const gguf::File*> all{&m->file_};
  for (const gguf::File& f : m->more_files_) all.push_back(&f);
  auto config = ModelConfig::from_metadata(m->file_.metadata());
  if (!config) return config.error().with_context(m->file_.name());
  m->config_ = *config;
  const gguf::TensorInfo* embd = nullptr;
  for (const gguf::File* f : all)
    if ((embd = f->find_tensor("token_embd.weight"))) break;
  // The vocabulary size is the number of embedding rows (the tokenizer may list more tokens).
  if (embd && embd->shape.size() == 2) {
    m->config_.n_vocab = static_cast<uint32_t>(embd->shape[1]);
  } else if (auto tokens = m->file_.metadata().get_array("tokenizer.ggml.tokens")) {
    m->config_.n_vocab = static_cast<uint32_t>((*tokens)->size());
  }
  m->range_ = range;
  m->range_.block_end = std::min(range.block_end, m->config_.n_layer);
  auto weights = ModelWeights::bind(all, m->config_, m->range_);
  if (!weights) return weights.error();
  m->weights_ = std::move(*weights);
  return m;
}

Result<std::unique_ptr<Session>> Session::create(const Model& model, uint32_t block_begin, uint32_t block_end,
                                                 uint32_t n_ctx) {
  const LoadRange& loaded = model.range();
  if (block_begin > block_end || block_begin < loaded.block_begin || block_end > loaded.block_end)
    return Error{ErrorCode::InvalidArgument, "blocks [" + std::to_string(block_begin) + ", " +
                                                 std::to_string(block_end) + ") are not within the loaded blocks [" +
                                                 std::to_string(loaded.block_begin) + ", " +
                                                 std::to_string(loaded.block_end) + ")"};
  if (n_ctx == 0) return Error{ErrorCode::InvalidArgument, "context length must be positive"};
  return std::unique_ptr<Session>(new Session(model, block_begin, block_end, n_ctx));
}

Session::Session(const Model& model, uint32_t block_begin, uint32_t block_end, uint32_t n_ctx)
    : model_(model),
      block_begin_(block_begin),
      block_end_(block_end),
      cache_(block_end - block_begin, n_ctx, model.config().kv_dim()) {}

void Session::ensure_scratch(uint32_t n) {
  if (n <= scratch_tokens_) return;
  const ModelConfig& c = model_.config();
  scratch_tokens_ = n;
  x_.resize(size_t{n} * c.n_embd);
  xn_.resize(size_t{n} * c.n_embd);
  q_.resize(size_t{n} * c.q_dim());
  k_.resize(size_t{n} * c.kv_dim());
  v_.resize(size_t{n} * c.kv_dim());
  if (c.arch == Architecture::Phi3) qkv_.resize(size_t{n} * (c.q_dim() + 2 * c.kv_dim()));
  attn_.resize(size_t{n} * c.q_dim());
  gate_.resize(size_t{n} * c.n_ff * (c.arch == Architecture::Phi3 ? 2 : 1));
  up_.resize(size_t{n} * c.n_ff);
  rope_cos_.resize(size_t{n} * c.rope_dims / 2);
  rope_sin_.resize(size_t{n} * c.rope_dims / 2);
  if (c.sliding_window != 0 && c.rope_base_swa != c.rope_base) {
    rope_cos_swa_.resize(size_t{n} * c.rope_dims / 2);
    rope_sin_swa_.resize(size_t{n} * c.rope_dims / 2);
  }
}

Result<void> Session::forward(std::span<const int32_t> tokens, std::span<const float> hidden, Output output,
                              std::vector<float>& out, kernels::ThreadPool& pool, kernels::BatchSums sums) {
  const ModelConfig& c = model_.config();
  const ModelWeights& w = model_.weights();
  const bool embed = block_begin_ == 0;
  uint32_t n;
  if (embed) {
    if (!hidden.empty() || tokens.empty())
      return Error{ErrorCode::InvalidArgument, "a session starting at block 0 takes tokens"};
    n = static_cast<uint32_t>(tokens.size());
  } else {
    if (!tokens.empty() || hidden.empty() || hidden.size() % c.n_embd != 0)
      return Error{ErrorCode::InvalidArgument, "a session starting at block " + std::to_string(block_begin_) +
                   " takes hidden states of n_tokens x " + std::to_string(c.n_embd) + " values"};
    n = static_cast<uint32_t>(hidden.size() / c.n_embd);
  }
  const bool wants_logits = output == Output::LastLogits || output == Output::AllLogits;
  if (wants_logits && (block_end_ != c.n_layer || !model_.range().head))
    return Error{ErrorCode::InvalidArgument,
                 "logits need the range to end at the last block with the output head loaded"};
  if (n > cache_.n_ctx() - cache_.size())
    return Error{ErrorCode::ResourceExhausted, "context is full: " + std::to_string(cache_.size()) + " + " +
                                                   std::to_string(n) + " positions exceed " +
                                                   std::to_string(cache_.n_ctx())};

  ensure_scratch(n);
  if (embed) {
    for (uint32_t t = 0; t < n; ++t) {
      if (tokens[t] < 0 || static_cast<uint32_t>(tokens[t]) >= c.n_vocab)
        return Error{ErrorCode::InvalidArgument, "token id " + std::to_string(tokens[t]) +
                                                     " is outside the vocabulary of " + std::to_string(c.n_vocab)};
      float* row = x_.data() + size_t{t} * c.n_embd;
      kernels::dequantize_row_of(w.token_embd, tokens[t], row);
      if (c.scale_embeddings) {
        const float s = std::sqrt(static_cast<float>(c.n_embd));
        for (uint32_t i = 0; i < c.n_embd; ++i) row[i] *= s;
      }
    }
  } else {
    std::copy(hidden.begin(), hidden.end(), x_.begin());
  }

  const uint32_t pos0 = cache_.size();
  const uint32_t half = c.rope_dims / 2;
  for (uint32_t t = 0; t < n; ++t)
    kernels::rope_angles(static_cast<float>(pos0 + t), c.rope_base, c.rope_freq_scale, w.rope_freqs.data, c.rope_dims,
                         rope_cos_.data() + size_t{t} * half, rope_sin_.data() + size_t{t} * half);
  if (!rope_cos_swa_.empty())
    for (uint32_t t = 0; t < n; ++t)
      kernels::rope_angles(static_cast<float>(pos0 + t), c.rope_base_swa, c.rope_freq_scale, w.rope_freqs.data,
                           c.rope_dims, rope_cos_swa_.data() + size_t{t} * half, rope_sin_swa_.data() + size_t{t} * half);
  if (auto r = cache_.extend(n); !r) return r;
  sums_ = sums;
  // Only the last token's row is wanted: like llama.cpp, the model's last block keeps only that row
  // after attention, so its feed-forward runs as a single-token product (whose sums differ in the
  // last bits from the batched ones, which F16-rounded activations can make visible in the logits).
  // Every range that holds the model's last block does the same, so a pipeline's output is the
  // local one.
  const bool last_row_only = (output == Output::LastLogits || output == Output::LastHidden) && n > 1;
  const bool pruned = last_row_only && block_end_ == c.n_layer;
  for (uint32_t layer = block_begin_; layer < block_end_; ++layer)
    run_block(layer, n, pos0, pool, pruned && layer + 1 == c.n_layer);
  if (pruned) n = 1;  // the last block left only the last token's row, at row 0

  if (output == Output::Hidden || output == Output::LastHidden) {
    const uint32_t first = output == Output::LastHidden ? n - 1 : 0;
    out.assign(x_.begin() + size_t{first} * c.n_embd, x_.begin() + size_t{n} * c.n_embd);
    return {};
  }
  const uint32_t first = output == Output::LastLogits ? n - 1 : 0;
  const uint32_t rows = n - first;
  for (uint32_t t = first; t < n; ++t)
    kernels::rms_norm(x_.data() + size_t{t} * c.n_embd, w.output_norm.data, xn_.data() + size_t{t - first} * c.n_embd,
                      c.n_embd, c.rms_eps);
  out.resize(size_t{rows} * c.n_vocab);
  kernels::matmul(w.output, xn_.data(), rows, out.data(), pool, sums_);
  if (c.final_softcap > 0) soft_cap(out.data(), out.size(), c.final_softcap);
  return {};
}

void Session::run_block(uint32_t layer, uint32_t n, uint32_t pos0, kernels::ThreadPool& pool, bool last_row_only) {
  const ModelConfig& c = model_.config();
  const BlockWeights& l = model_.weights().blocks[layer];
  const uint32_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();

  for (uint32_t t = 0; t < n; ++t)
    kernels::rms_norm(x_.data() + size_t{t} * d, l.attn_norm.data, xn_.data() + size_t{t} * d, d, c.rms_eps);

  if (l.wqkv.data) {
    const uint32_t width = qd + 2 * kvd;
    kernels::matmul(l.wqkv, xn_.data(), n, qkv_.data(), pool, sums_);
    for (uint32_t t = 0; t < n; ++t) {
      const float* row = qkv_.data() + size_t{t} * width;
      std::copy(row, row + qd, q_.data() + size_t{t} * qd);
      std::copy(row + qd, row + qd + kvd, k_.data() + size_t{t} * kvd);
      std::copy(row + qd + kvd, row + width, v_.data() + size_t{t} * kvd);
    }
  } else {
    kernels::matmul(l.wq, xn_.data(), n, q_.data(), pool, sums_);
    kernels::matmul(l.wk, xn_.data(), n, k_.data(), pool, sums_);
    kernels::matmul(l.wv, xn_.data(), n, v_.data(), pool, sums_);
  }
  for (uint32_t t = 0; t < n; ++t) {
    if (l.bq) kernels::add(q_.data() + size_t{t} * qd, l.bq.data, qd);
    if (l.bk) kernels::add(k_.data() + size_t{t} * kvd, l.bk.data, kvd);
    if (l.bv) kernels::add(v_.data() + size_t{t} * kvd, l.bv.data, kvd);
  }

  const uint32_t half = c.rope_dims / 2;
  auto rope = c.rope_style == RopeStyle::Adjacent ? kernels::rope_adjacent : kernels::rope_halves;
  const bool swa_angles = c.is_sliding(layer) && !rope_cos_swa_.empty();
  const std::vector<float>& rope_cos = swa_angles ? rope_cos_swa_ : rope_cos_;
  const std::vector<float>& rope_sin = swa_angles ? rope_sin_swa_ : rope_sin_;
  for (uint32_t t = 0; t < n; ++t) {
    const float* cs = rope_cos.data() + size_t{t} * half;
    const float* sn = rope_sin.data() + size_t{t} * half;
    for (uint32_t h = 0; h < c.n_head; ++h) {
      float* qh = q_.data() + size_t{t} * qd + size_t{h} * c.head_dim;
      if (l.q_norm) kernels::rms_norm(qh, l.q_norm.data, qh, c.head_dim, c.rms_eps);
      rope(qh, cs, sn, c.rope_dims);
      // phi3 and the gemmas scale the query before attention (and attend with scale 1), as
      // llama.cpp does; the order matters because the query is rounded to F16 next.
      if (c.scale_query) kernels::scale(qh, c.attn_scale, c.head_dim);
    }
    for (uint32_t h = 0; h < c.n_head_kv; ++h) {
      float* kh = k_.data() + size_t{t} * kvd + size_t{h} * c.head_dim;
      if (l.k_norm) kernels::rms_norm(kh, l.k_norm.data, kh, c.head_dim, c.rms_eps);
      rope(kh, cs, sn, c.rope_dims);
    }
    const uint32_t b = layer - block_begin_;
    to_fp16(k_.data() + size_t{t} * kvd, cache_.key(b, pos0 + t), kvd);
    for (uint32_t i = 0; i < kvd; ++i) cache_.values(b, i)[pos0 + t] = kernels::fp32_to_fp16(v_[size_t{t} * kvd + i]);
  }

  attention(layer - block_begin_, n, pos0, pool);
  kernels::matmul(l.wo, attn_.data(), n, xn_.data(), pool, sums_);
  if (l.attn_post_norm)
    for (uint32_t t = 0; t < n; ++t) {
      float* row = xn_.data() + size_t{t} * d;
      kernels::rms_norm(row, l.attn_post_norm.data, row, d, c.rms_eps);
    }
  kernels::add(x_.data(), xn_.data(), size_t{n} * d);
  if (last_row_only) {
    std::copy(x_.begin() + size_t{n - 1} * d, x_.begin() + size_t{n} * d, x_.begin());
    n = 1;
  }

  for (uint32_t t = 0; t < n; ++t)
    kernels::rms_norm(x_.data() + size_t{t} * d, l.ffn_norm.data, xn_.data() + size_t{t} * d, d, c.rms_eps);
  const uint32_t ff = c.n_ff;
  if (l.w_gate.data) {
    kernels::matmul(l.w_gate, xn_.data(), n, gate_.data(), pool, sums_);
    kernels::matmul(l.w_up, xn_.data(), n, up_.data(), pool, sums_);
  } else {
    // Fused gate and up (phi3): each output row holds the gate half, then the up half. Moving the
    // gate halves down in token order never overwrites a row not yet moved (row t goes from 2t*ff
    // to t*ff), so they are compacted in place.
    kernels::matmul(l.w_up, xn_.data(), n, gate_.data(), pool, sums_);
    for (uint32_t t = 0; t < n; ++t) {
      const float* row = gate_.data() + size_t{t} * 2 * ff;
      std::copy(row + ff, row + 2 * ff, up_.data() + size_t{t} * ff);
      if (t > 0) std::copy(row, row + ff, gate_.data() + size_t{t} * ff);
    }
  }
  if (c.activation == FfnActivation::SiluGated)
    kernels::silu_mul(gate_.data(), up_.data(), size_t{n} * ff);
  else
    kernels::gelu_mul(gate_.data(), up_.data(), size_t{n} * ff);
  kernels::matmul(l.w_down, gate_.data(), n, xn_.data(), pool, sums_);
  if (l.ffn_post_norm)
    for (uint32_t t = 0; t < n; ++t) {
      float* row = xn_.data() + size_t{t} * d;
      kernels::rms_norm(row, l.ffn_post_norm.data, row, d, c.rms_eps);
    }
  kernels::add(x_.data(), xn_.data(), size_t{n} * d);
}

// Attention as llama.cpp computes it without flash attention: scores = K.q with q rounded to F16,
// soft-capped where the model says so (gemma2), softmax over the cache length padded to 32 (future
// positions, and in sliding-window layers positions at least `sliding_window` back, masked),
// probabilities rounded to F16, out = V.p; each dot summed the way ggml's batched GEMM (n > 1) or
// single-row dot (n = 1) does. The cache keeps every position even in sliding-window layers, so
// that a block range's state does not depend on which layers slide.
void Session::attention(uint32_t b, uint32_t n, uint32_t pos0, kernels::ThreadPool& pool) {
  const ModelConfig& c = model_.config();
  const uint32_t hd = c.head_dim, qd = c.q_dim();
  const uint32_t group = c.n_head / c.n_head_kv;
  const float scale = c.scale_query ? 1.0f : c.attn_scale;
  const bool sliding = c.is_sliding(block_begin_ + b);
  const uint32_t window = c.sliding_window;
  const uint32_t n_kv = std::min(cache_.n_ctx(), (pos0 + n + 31) / 32 * 32);
  // ggml's kernel choice: prompt batches sum the dots like its GEMM, single tokens (and batches
  // that must give each token its own bits) like its vec_dot.
  const bool batched = n > 1 && hd % 16 == 0 && sums_ == kernels::BatchSums::kAsGgml;
  const auto key_order = batched ? kernels::F16DotOrder::kBatched : kernels::F16DotOrder::kSingle;
  const auto value_order = batched && n_kv % 16 == 0 ? kernels::F16DotOrder::kBatched : kernels::F16DotOrder::kSingle;
  // Up to kGroup tokens of one head per item: each key and value row is converted from F16 once for
  // all of them (kernels::dot_f16_rows_multi), with the same bits as one token at a time.
  constexpr uint32_t kGroup = 4;
  const size_t per_query = size_t{cache_.n_ctx()} + size_t{hd};
  const size_t per_thread = kGroup * per_query;
  if (scores_.size() < size_t(pool.size()) * per_thread) scores_.resize(size_t(pool.size()) * per_thread);
  const uint32_t n_groups = (n + kGroup - 1) / kGroup;

  // Items are head-major: causal rows get longer with the token index, so token-major chunks would
  // give the last thread most of the work; and one head's keys stay in cache across its tokens.
  pool.parallel_for(int64_t{n_groups} * c.n_head, [&](int thread, int64_t begin, int64_t end) {
    float* scratch = scores_.data() + size_t(thread) * per_thread;
    for (int64_t item = begin; item < end; ++item) {
      const uint32_t h = static_cast<uint32_t>(item / n_groups);
      const uint32_t t0 = static_cast<uint32_t>(item % n_groups) * kGroup;
      const uint32_t nq = std::min(kGroup, n - t0);
      const uint32_t g = h / group;
      const float* q16[kGroup];
      float* scores[kGroup];
      float* out[kGroup];
      for (uint32_t i = 0; i < nq; ++i) {
        scores[i] = scratch + i * per_query;
        float* qi = scores[i] + cache_.n_ctx();
        const float* q = q_.data() + size_t{t0 + i} * qd + size_t{h} * hd;
        std::copy(q, q + hd, qi);
        kernels::round_through_f16(qi, hd);
        q16[i] = qi;
        out[i] = attn_.data() + size_t{t0 + i} * qd + size_t{h} * hd;
      }
      // Causal: token t0 + i sees positions [0, pos0 + t0 + i]; the group's last token sees the most.
      // In a sliding-window layer the group's first token sees the oldest position: keys before it
      // are not scored at all (each score is its own dot, so this changes no bits).
      const uint32_t seen = pos0 + t0 + nq;
      const uint32_t lo = first_visible(sliding, window, pos0 + t0);
      float* from_lo[kGroup];
      for (uint32_t i = 0; i < nq; ++i) from_lo[i] = scores[i] + lo;
      kernels::dot_f16_rows_multi(cache_.key(b, lo) + size_t{g} * hd, c.kv_dim(), seen - lo, q16, static_cast<int>(nq),
                                  hd, key_order, scale, from_lo);
      for (uint32_t i = 0; i < nq; ++i) {
        const uint32_t last = pos0 + t0 + i;
        // Capping before masking: tanh would turn a masked -inf into -cap.
        if (c.attn_softcap > 0) soft_cap(scores[i] + lo, last + 1 - lo, c.attn_softcap);
        std::fill(scores[i], scores[i] + first_visible(sliding, window, last), -INFINITY);
        std::fill(scores[i] + last + 1, scores[i] + n_kv, -INFINITY);
        kernels::softmax(scores[i], n_kv);
        kernels::round_through_f16(scores[i], n_kv);
      }
      kernels::dot_f16_rows_multi(cache_.values(b, g * hd), cache_.n_ctx(), hd, scores, static_cast<int>(nq), n_kv,
                                  value_order, 1.0f, out);
    }
  });
}

}  // namespace omni::model
