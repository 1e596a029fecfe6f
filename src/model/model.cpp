#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
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

// Tokens of one head per attention work item (Session::attention).
constexpr uint32_t kGroup = 4;

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


Result<void> Session::copy_from(const Session& other) {
  if (&other.model_ != &model_ || other.block_begin_ != block_begin_ || other.block_end_ != block_end_)
    return Error{ErrorCode::InvalidArgument, "cannot copy a session of another model or block range"};
  if (&other == this) return {};
  return cache_.copy_from(other.cache_);
}

size_t StepScratch::bytes() const {
  size_t n = 0;
  for (const std::vector<float>* v : {&x_, &xn_, &q_, &k_, &v_, &qkv_, &attn_, &gate_, &up_, &rope_cos_, &rope_sin_,
                                      &rope_cos_swa_, &rope_sin_swa_, &scores_, &logits_})
    n += v->capacity() * sizeof(float);
  return n + sequences_.capacity() * sizeof(Sequence) + attention_.capacity() * sizeof(AttentionItem);
}

void StepScratch::ensure(const ModelConfig& c, uint32_t n, uint32_t max_ctx, int threads) {
  const size_t scores = size_t(threads) * kGroup * (size_t{max_ctx} + c.head_dim);
  if (scores_.size() < scores) scores_.resize(scores);
  if (n <= capacity_rows_) return;
  capacity_rows_ = n;
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
                              std::vector<float>& out, kernels::ThreadPool& pool, BatchSums sums) {
  SequenceStep step{this, tokens, hidden, output, &out, {}};
  const uint32_t n_embd = model_.config().n_embd;
  const size_t rows = block_begin_ == 0 ? tokens.size() : hidden.size() / n_embd;
  if (sums == BatchSums::kAsGgml || rows <= 1) {
    forward_batch({&step, 1}, scratch_, pool);
    return std::move(step.result);
  }
  // Every row as a call of its own (ggml sums one row differently from a batch for F16/F32/BF16
  // weights and in attention). The whole input is checked first, so a refused call changes nothing.
  if (auto r = check(step); !r) return r;
  const bool every_row = output == Output::AllLogits || output == Output::Hidden;
  std::vector<float> row;
  out.clear();
  for (size_t t = 0; t < rows; ++t) {
    SequenceStep one{this, tokens.empty() ? tokens : tokens.subspan(t, 1),
                     hidden.empty() ? hidden : hidden.subspan(t * n_embd, n_embd), output, &row, {}};
    forward_batch({&one, 1}, scratch_, pool);
    if (!one.result) return std::move(one.result);
    if (every_row || t + 1 == rows) out.insert(out.end(), row.begin(), row.end());
  }
  return {};
}

Result<void> Session::check(const SequenceStep& step) const {
  const ModelConfig& c = model_.config();
  if (step.out == nullptr) return Error{ErrorCode::InvalidArgument, "a step needs an output vector"};
  uint32_t n;
  if (block_begin_ == 0) {
    if (!step.hidden.empty() || step.tokens.empty())
      return Error{ErrorCode::InvalidArgument, "a session starting at block 0 takes tokens"};
    n = static_cast<uint32_t>(step.tokens.size());
  } else {
    if (!step.tokens.empty() || step.hidden.empty() || step.hidden.size() % c.n_embd != 0)
      return Error{ErrorCode::InvalidArgument, "a session starting at block " + std::to_string(block_begin_) +
                   " takes hidden states of n_tokens x " + std::to_string(c.n_embd) + " values"};
    n = static_cast<uint32_t>(step.hidden.size() / c.n_embd);
  }
  const bool wants_logits = step.output == Output::LastLogits || step.output == Output::AllLogits;
  if (wants_logits && (block_end_ != c.n_layer || !model_.range().head))
    return Error{ErrorCode::InvalidArgument,
                 "logits need the range to end at the last block with the output head loaded"};
  if (n > cache_.n_ctx() - cache_.size())
    return Error{ErrorCode::ResourceExhausted, "context is full: " + std::to_string(cache_.size()) + " + " +
                                                   std::to_string(n) + " positions exceed " +
                                                   std::to_string(cache_.n_ctx())};
  for (int32_t id : step.tokens)
    if (id < 0 || static_cast<uint32_t>(id) >= c.n_vocab)
      return Error{ErrorCode::InvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                                   std::to_string(c.n_vocab)};
  return {};
}

void Session::forward_batch(std::span<SequenceStep> steps, StepScratch& s, kernels::ThreadPool& pool) {
  const Session* first = nullptr;
  for (size_t i = 0; i < steps.size(); ++i) {
    SequenceStep& step = steps[i];
    if (step.session == nullptr) {
      step.result = Error{ErrorCode::InvalidArgument, "a step needs a session"};
      continue;
    }
    step.result = step.session->check(step);
    if (!step.result) continue;
    const Session& session = *step.session;
    if (first && (&session.model_ != &first->model_ || session.block_begin_ != first->block_begin_ ||
                  session.block_end_ != first->block_end_)) {
      step.result = Error{ErrorCode::InvalidArgument, "a batch runs one model's block range; this session's differs"};
      continue;
    }
    bool twice = false;
    for (size_t j = 0; j < i; ++j) twice = twice || (steps[j].result && steps[j].session == &session);
    if (twice) {
      step.result = Error{ErrorCode::InvalidArgument, "a session can take one step of a batch"};
      continue;
    }
    if (!first) first = &session;
  }
  if (!first) return;
  const Model& model = first->model_;
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();

  // Multi-row sequences first: the last rows of every matrix multiply are then the single-row
  // sequences', which matmul sums as it would sum each alone.
  s.sequences_.clear();
  for (int pass = 0; pass < 2; ++pass)
    for (SequenceStep& step : steps) {
      if (!step.result) continue;
      const uint32_t n = first->block_begin_ == 0 ? static_cast<uint32_t>(step.tokens.size())
                                                  : static_cast<uint32_t>(step.hidden.size() / c.n_embd);
      if ((n > 1) != (pass == 0)) continue;
      const bool pruned =
          (step.output == Output::LastLogits || step.output == Output::LastHidden) && n > 1 && first->block_end_ == c.n_layer;
      s.sequences_.push_back({step.session, &step, n, 0, step.session->cache_.size(), 0, pruned});
    }
  uint32_t rows = 0, max_ctx = 0;
  s.single_rows_ = 0;
  for (StepScratch::Sequence& q : s.sequences_) {
    q.row0 = rows;
    rows += q.n;
    if (q.n == 1) ++s.single_rows_;
    max_ctx = std::max(max_ctx, q.session->cache_.n_ctx());
  }
  s.rows_ = rows;
  s.ensure(c, rows, max_ctx, pool.size());

  const uint32_t half = c.rope_dims / 2;
  for (const StepScratch::Sequence& q : s.sequences_) {
    for (uint32_t t = 0; t < q.n; ++t) {
      float* row = s.x_.data() + size_t{q.row0 + t} * c.n_embd;
      if (first->block_begin_ == 0) {
        kernels::dequantize_row_of(w.token_embd, q.step->tokens[t], row);
        if (c.scale_embeddings) {
          const float sc = std::sqrt(static_cast<float>(c.n_embd));
          for (uint32_t i = 0; i < c.n_embd; ++i) row[i] *= sc;
        }
      } else {
        std::copy_n(q.step->hidden.data() + size_t{t} * c.n_embd, c.n_embd, row);
      }
      const float pos = static_cast<float>(q.pos0 + t);
      const size_t r = size_t{q.row0 + t} * half;
      kernels::rope_angles(pos, c.rope_base, c.rope_freq_scale, w.rope_freqs.data, c.rope_dims,
                           s.rope_cos_.data() + r, s.rope_sin_.data() + r);
      if (!s.rope_cos_swa_.empty())
        kernels::rope_angles(pos, c.rope_base_swa, c.rope_freq_scale, w.rope_freqs.data, c.rope_dims,
                             s.rope_cos_swa_.data() + r, s.rope_sin_swa_.data() + r);
    }
    // Checked above: the context has room.
    (void)q.session->cache_.extend(q.n);
  }

  // Attention work: items are head-major within a sequence, since causal rows get longer with the
  // token index (token-major chunks would give the last thread most of the work) and one head's
  // keys stay in cache across its tokens.
  s.attention_.clear();
  for (uint32_t i = 0; i < s.sequences_.size(); ++i) {
    const uint32_t n = s.sequences_[i].n;
    for (uint32_t h = 0; h < c.n_head; ++h)
      for (uint32_t t0 = 0; t0 < n; t0 += kGroup) s.attention_.push_back({i, h, t0});
  }

  // Only the last token's row is wanted: like llama.cpp, the model's last block keeps only that row
  // after attention, so its feed-forward runs as a single-token product (whose sums differ in the
  // last bits from the batched ones, which F16-rounded activations can make visible in the logits).
  // Every range that holds the model's last block does the same, so a pipeline's output is the
  // local one.
  bool any_pruned = false;
  for (const StepScratch::Sequence& q : s.sequences_) any_pruned = any_pruned || q.pruned;
  for (uint32_t layer = first->block_begin_; layer < first->block_end_; ++layer)
    run_block(model, layer, first->block_begin_, s, pool, any_pruned && layer + 1 == c.n_layer);

  // Logits rows: a multi-row AllLogits sequence's rows are a batch, every other's a single row;
  // batches first, as matmul wants them. One sequence's rows go straight to its output.
  uint32_t logit_rows = 0, logit_single = 0, logit_sequences = 0;
  StepScratch::Sequence* only = nullptr;
  for (StepScratch::Sequence& q : s.sequences_) {
    const Output o = q.step->output;
    if (o == Output::Hidden || o == Output::LastHidden) {
      const uint32_t from = o == Output::LastHidden ? q.row0 + q.n - 1 : q.row0;
      q.step->out->assign(s.x_.begin() + size_t{from} * c.n_embd, s.x_.begin() + size_t{q.row0 + q.n} * c.n_embd);
      continue;
    }
    const uint32_t r = o == Output::LastLogits ? 1 : q.n;
    logit_rows += r;
    if (r == 1) ++logit_single;
    ++logit_sequences;
    only = &q;
  }
  if (logit_sequences == 0) return;
  uint32_t next = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (StepScratch::Sequence& q : s.sequences_) {
      const Output o = q.step->output;
      if (o != Output::AllLogits && o != Output::LastLogits) continue;
      const uint32_t first_row = o == Output::LastLogits ? q.row0 + q.n - 1 : q.row0;
      const uint32_t r = q.row0 + q.n - first_row;
      if ((r > 1) != (pass == 0)) continue;
      for (uint32_t t = 0; t < r; ++t)
        kernels::rms_norm(s.x_.data() + size_t{first_row + t} * c.n_embd, w.output_norm.data,
                          s.xn_.data() + size_t{next + t} * c.n_embd, c.n_embd, c.rms_eps);
      q.logits_row = next;
      next += r;
    }
  float* logits;
  if (logit_sequences == 1) {
    only->step->out->resize(size_t{logit_rows} * c.n_vocab);
    logits = only->step->out->data();
  } else {
    if (s.logits_.size() < size_t{logit_rows} * c.n_vocab) s.logits_.resize(size_t{logit_rows} * c.n_vocab);
    logits = s.logits_.data();
  }
  kernels::matmul(w.output, s.xn_.data(), logit_rows, logits, pool, logit_single);
  if (c.final_softcap > 0) soft_cap(logits, size_t{logit_rows} * c.n_vocab, c.final_softcap);
  if (logit_sequences == 1) return;
  for (StepScratch::Sequence& q : s.sequences_) {
    const Output o = q.step->output;
    if (o != Output::AllLogits && o != Output::LastLogits) continue;
    const uint32_t r = o == Output::LastLogits ? 1 : q.n;
    q.step->out->assign(logits + size_t{q.logits_row} * c.n_vocab, logits + size_t{q.logits_row + r} * c.n_vocab);
  }
}

void Session::run_block(const Model& model, uint32_t layer, uint32_t block_begin, StepScratch& s,
                        kernels::ThreadPool& pool, bool prune) {
  const ModelConfig& c = model.config();
  const BlockWeights& l = model.weights().blocks[layer];
  const uint32_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim();
  uint32_t n = s.rows_;
  const int64_t single = s.single_rows_;

  for (uint32_t t = 0; t < n; ++t)
    kernels::rms_norm(s.x_.data() + size_t{t} * d, l.attn_norm.data, s.xn_.data() + size_t{t} * d, d, c.rms_eps);

  if (l.wqkv.data) {
    const uint32_t width = qd + 2 * kvd;
    kernels::matmul(l.wqkv, s.xn_.data(), n, s.qkv_.data(), pool, single);
    for (uint32_t t = 0; t < n; ++t) {
      const float* row = s.qkv_.data() + size_t{t} * width;
      std::copy(row, row + qd, s.q_.data() + size_t{t} * qd);
      std::copy(row + qd, row + qd + kvd, s.k_.data() + size_t{t} * kvd);
      std::copy(row + qd + kvd, row + width, s.v_.data() + size_t{t} * kvd);
    }
  } else {
    kernels::matmul(l.wq, s.xn_.data(), n, s.q_.data(), pool, single);
    kernels::matmul(l.wk, s.xn_.data(), n, s.k_.data(), pool, single);
    kernels::matmul(l.wv, s.xn_.data(), n, s.v_.data(), pool, single);
  }
  for (uint32_t t = 0; t < n; ++t) {
    if (l.bq) kernels::add(s.q_.data() + size_t{t} * qd, l.bq.data, qd);
    if (l.bk) kernels::add(s.k_.data() + size_t{t} * kvd, l.bk.data, kvd);
    if (l.bv) kernels::add(s.v_.data() + size_t{t} * kvd, l.bv.data, kvd);
  }

  const uint32_t half = c.rope_dims / 2;
  auto rope = c.rope_style == RopeStyle::Adjacent ? kernels::rope_adjacent : kernels::rope_halves;
  const bool swa_angles = c.is_sliding(layer) && !s.rope_cos_swa_.empty();
  const std::vector<float>& rope_cos = swa_angles ? s.rope_cos_swa_ : s.rope_cos_;
  const std::vector<float>& rope_sin = swa_angles ? s.rope_sin_swa_ : s.rope_sin_;
  const uint32_t b = layer - block_begin;
  for (const StepScratch::Sequence& q : s.sequences_) {
    KvCache& cache = q.session->cache_;
    for (uint32_t i = 0; i < q.n; ++i) {
      const uint32_t t = q.row0 + i;
      const float* cs = rope_cos.data() + size_t{t} * half;
      const float* sn = rope_sin.data() + size_t{t} * half;
      for (uint32_t h = 0; h < c.n_head; ++h) {
        float* qh = s.q_.data() + size_t{t} * qd + size_t{h} * c.head_dim;
        if (l.q_norm) kernels::rms_norm(qh, l.q_norm.data, qh, c.head_dim, c.rms_eps);
        rope(qh, cs, sn, c.rope_dims);
        // phi3 and the gemmas scale the query before attention (and attend with scale 1), as
        // llama.cpp does; the order matters because the query is rounded to F16 next.
        if (c.scale_query) kernels::scale(qh, c.attn_scale, c.head_dim);
      }
      for (uint32_t h = 0; h < c.n_head_kv; ++h) {
        float* kh = s.k_.data() + size_t{t} * kvd + size_t{h} * c.head_dim;
        if (l.k_norm) kernels::rms_norm(kh, l.k_norm.data, kh, c.head_dim, c.rms_eps);
        rope(kh, cs, sn, c.rope_dims);
      }
      to_fp16(s.k_.data() + size_t{t} * kvd, cache.key(b, q.pos0 + i), kvd);
      for (uint32_t j = 0; j < kvd; ++j)
        cache.values(b, j)[q.pos0 + i] = kernels::fp32_to_fp16(s.v_[size_t{t} * kvd + j]);
    }
  }

  attention(model, layer, block_begin, s, pool);
  kernels::matmul(l.wo, s.attn_.data(), n, s.xn_.data(), pool, single);
  if (l.attn_post_norm)
    for (uint32_t t = 0; t < n; ++t) {
      float* row = s.xn_.data() + size_t{t} * d;
      kernels::rms_norm(row, l.attn_post_norm.data, row, d, c.rms_eps);
    }
  kernels::add(s.x_.data(), s.xn_.data(), size_t{n} * d);
  if (prune) {
    // Kept rows in the new order (into xn_, free until the norm below): the sequences that keep
    // every row, then the pruned ones' last rows and the single-row sequences, as single rows.
    uint32_t next = 0;
    for (int pass = 0; pass < 2; ++pass)
      for (StepScratch::Sequence& q : s.sequences_) {
        const bool keeps_all = q.n > 1 && !q.pruned;
        if (keeps_all != (pass == 0)) continue;
        const uint32_t from = q.pruned ? q.row0 + q.n - 1 : q.row0;
        const uint32_t r = q.pruned ? 1 : q.n;
        std::copy_n(s.x_.data() + size_t{from} * d, size_t{r} * d, s.xn_.data() + size_t{next} * d);
        q.row0 = next;
        q.n = r;
        next += r;
      }
    std::swap(s.x_, s.xn_);
    uint32_t singles = 0;
    for (const StepScratch::Sequence& q : s.sequences_) singles += q.n == 1 ? 1 : 0;
    s.rows_ = n = next;
    s.single_rows_ = singles;
  }
  const int64_t ffn_single = s.single_rows_;

  for (uint32_t t = 0; t < n; ++t)
    kernels::rms_norm(s.x_.data() + size_t{t} * d, l.ffn_norm.data, s.xn_.data() + size_t{t} * d, d, c.rms_eps);
  const uint32_t ff = c.n_ff;
  if (l.w_gate.data) {
    kernels::matmul(l.w_gate, s.xn_.data(), n, s.gate_.data(), pool, ffn_single);
    kernels::matmul(l.w_up, s.xn_.data(), n, s.up_.data(), pool, ffn_single);
  } else {
    // Fused gate and up (phi3): each output row holds the gate half, then the up half. Moving the
    // gate halves down in token order never overwrites a row not yet moved (row t goes from 2t*ff
    // to t*ff), so they are compacted in place.
    kernels::matmul(l.w_up, s.xn_.data(), n, s.gate_.data(), pool, ffn_single);
    for (uint32_t t = 0; t < n; ++t) {
      const float* row = s.gate_.data() + size_t{t} * 2 * ff;
      std::copy(row + ff, row + 2 * ff, s.up_.data() + size_t{t} * ff);
      if (t > 0) std::copy(row, row + ff, s.gate_.data() + size_t{t} * ff);
    }
  }
  if (c.activation == FfnActivation::SiluGated)
    kernels::silu_mul(s.gate_.data(), s.up_.data(), size_t{n} * ff);
  else
    kernels::gelu_mul(s.gate_.data(), s.up_.data(), size_t{n} * ff);
  kernels::matmul(l.w_down, s.gate_.data(), n, s.xn_.data(), pool, ffn_single);
  if (l.ffn_post_norm)
    for (uint32_t t = 0; t < n; ++t) {
      float* row = s.xn_.data() + size_t{t} * d;
      kernels::rms_norm(row, l.ffn_post_norm.data, row, d, c.rms_eps);
    }
  kernels::add(s.x_.data(), s.xn_.data(), size_t{n} * d);
}

namespace {

// What an attention work item needs, behind one pointer so that parallel_for's std::function
// holds it without allocating.
struct AttentionJob {
  const ModelConfig* c;
  StepScratch* s;
  uint32_t b;
  bool sliding;
  size_t per_thread;
};

}  // namespace

// Attention as llama.cpp computes it without flash attention: scores = K.q with q rounded to F16,
// soft-capped where the model says so (gemma2), softmax over the cache length padded to 32 (future
// positions, and in sliding-window layers positions at least `sliding_window` back, masked),
// probabilities rounded to F16, out = V.p; each dot summed the way ggml's batched GEMM (n > 1) or
// single-row dot (n = 1) does, n being the sequence's own token count. The cache keeps every
// position even in sliding-window layers, so that a block range's state does not depend on which
// layers slide.
void Session::attention(const Model& model, uint32_t layer, uint32_t block_begin, StepScratch& s,
                        kernels::ThreadPool& pool) {
  const ModelConfig& c = model.config();
  uint32_t max_ctx = 0;
  for (const StepScratch::Sequence& q : s.sequences_) max_ctx = std::max(max_ctx, q.session->cache_.n_ctx());
  const AttentionJob job{&c, &s, layer - block_begin, c.is_sliding(layer),
                         kGroup * (size_t{max_ctx} + size_t{c.head_dim})};
  const AttentionJob* jp = &job;
  pool.parallel_for(static_cast<int64_t>(s.attention_.size()), [jp](int thread, int64_t begin, int64_t end) {
    const ModelConfig& c = *jp->c;
    StepScratch& s = *jp->s;
    const uint32_t b = jp->b;
    const uint32_t hd = c.head_dim, qd = c.q_dim();
    const uint32_t group = c.n_head / c.n_head_kv;
    const float scale = c.scale_query ? 1.0f : c.attn_scale;
    const uint32_t window = c.sliding_window;
    float* scratch = s.scores_.data() + size_t(thread) * jp->per_thread;
    for (int64_t index = begin; index < end; ++index) {
      const StepScratch::AttentionItem item = s.attention_[size_t(index)];
      const StepScratch::Sequence& seq = s.sequences_[item.sequence];
      const KvCache& cache = seq.session->cache_;
      const uint32_t n = seq.n, pos0 = seq.pos0, h = item.head, t0 = item.t0;
      const uint32_t n_ctx = cache.n_ctx();
      const size_t per_query = size_t{n_ctx} + size_t{hd};
      const uint32_t n_kv = std::min(n_ctx, (pos0 + n + 31) / 32 * 32);
      // ggml's kernel choice: prompt batches sum the dots like its GEMM, single tokens like its vec_dot.
      const bool batched = n > 1 && hd % 16 == 0;
      const auto key_order = batched ? kernels::F16DotOrder::kBatched : kernels::F16DotOrder::kSingle;
      const auto value_order =
          batched && n_kv % 16 == 0 ? kernels::F16DotOrder::kBatched : kernels::F16DotOrder::kSingle;
      // Up to kGroup tokens of one head per item: each key and value row is converted from F16 once
      // for all of them (kernels::dot_f16_rows_multi), with the same bits as one token at a time.
      const uint32_t nq = std::min(kGroup, n - t0);
      const uint32_t g = h / group;
      const float* q16[kGroup];
      float* scores[kGroup];
      float* out[kGroup];
      for (uint32_t i = 0; i < nq; ++i) {
        scores[i] = scratch + i * per_query;
        float* qi = scores[i] + n_ctx;
        const float* q = s.q_.data() + size_t{seq.row0 + t0 + i} * qd + size_t{h} * hd;
        std::copy(q, q + hd, qi);
        kernels::round_through_f16(qi, hd);
        q16[i] = qi;
        out[i] = s.attn_.data() + size_t{seq.row0 + t0 + i} * qd + size_t{h} * hd;
      }
      // Causal: token t0 + i sees positions [0, pos0 + t0 + i]; the group's last token sees the most.
      // In a sliding-window layer the group's first token sees the oldest position: keys before it
      // are not scored at all (each score is its own dot, so this changes no bits).
      const uint32_t seen = pos0 + t0 + nq;
      const uint32_t lo = first_visible(jp->sliding, window, pos0 + t0);
      float* from_lo[kGroup];
      for (uint32_t i = 0; i < nq; ++i) from_lo[i] = scores[i] + lo;
      kernels::dot_f16_rows_multi(cache.key(b, lo) + size_t{g} * hd, c.kv_dim(), seen - lo, q16, static_cast<int>(nq),
                                  hd, key_order, scale, from_lo);
      for (uint32_t i = 0; i < nq; ++i) {
        const uint32_t last = pos0 + t0 + i;
        // Capping before masking: tanh would turn a masked -inf into -cap.
        if (c.attn_softcap > 0) soft_cap(scores[i] + lo, last + 1 - lo, c.attn_softcap);
        std::fill(scores[i], scores[i] + first_visible(jp->sliding, window, last), -INFINITY);
        std::fill(scores[i] + last + 1, scores[i] + n_kv, -INFINITY);
        kernels::softmax(scores[i], n_kv);
        kernels::round_through_f16(scores[i], n_kv);
      }
      kernels::dot_f16_rows_multi(cache.values(b, g * hd), n_ctx, hd, scores, static_cast<int>(nq), n_kv, value_order,
                                  1.0f, out);
    }
  });
}

}  // namespace omni::model
