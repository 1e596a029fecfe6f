// Model and Session: a transformer loaded from a GGUF file, and the inference state of one sequence
// running a contiguous range of its blocks.
//
// A whole machine runs blocks [0, n_layer) with embeddings and head; a network node runs [a, b) and
// passes hidden states on. Both use Session::forward, so splitting a model across calls (or
// machines) gives bit-identical results to running it in one piece.
//
// Ownership: Model owns the mapped file; its weights are views into it. A Session refers to its Model,
// which must outlive it. A Session is used from one thread at a time; the ThreadPool passed to
// forward may be shared by sessions that are not run at the same time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "gguf/reader.h"
#include "kernels/matmul.h"
#include "kernels/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace omni::model {

class Model {
 public:
  // Maps `path` and binds the tensors `range` needs; errors name the file and the problem.
  static Result<std::unique_ptr<Model>> load(const std::string& path, const LoadRange& range = {});
  static Result<std::unique_ptr<Model>> from_file(gguf::File file, const LoadRange& range = {});
  // A model held in several files (the shards of src/store): configuration and tokenizer come from
  // files[0], each tensor from the first file that has it. Loading is as cheap as from one file
  // (every file is mapped, nothing copied). The Model owns all the files.
  static Result<std::unique_ptr<Model>> from_files(std::vector<gguf::File> files, const LoadRange& range = {});

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const gguf::File& file() const { return file_; }  // the file holding the metadata
  const std::vector<gguf::File>& more_files() const { return more_files_; }  // from_files: the others
  const LoadRange& range() const { return range_; }

 private:
  Model() = default;
  gguf::File file_;
  std::vector<gguf::File> more_files_;
  ModelConfig config_;
  ModelWeights weights_;
  LoadRange range_;
};

enum class Output {
  Hidden,      // the residual stream after the last block of the range, n_tokens x n_embd
  LastHidden,  // that stream's last row only, n_embd (what the node holding the model's last block
               // sends for a generation step; see LastLogits for why it may differ in the last bits)
  LastLogits,  // logits of the last token, n_vocab (the range must end at n_layer). As in llama.cpp,
               // the model's last block keeps only that token's row after attention, so its
               // feed-forward sums are a single token's (with BatchSums::kAsGgml they may differ
               // in the last bits from the same row computed in the batch)
  AllLogits,   // logits of every token, n_tokens x n_vocab
};

class Session {
 public:
  // Runs blocks [block_begin, block_end) of `model` for up to n_ctx positions.
  static Result<std::unique_ptr<Session>> create(const Model& model, uint32_t block_begin, uint32_t block_end,
                                                 uint32_t n_ctx);

  // Runs `tokens` (when the range starts at block 0) or `hidden` (n_tokens x n_embd, otherwise)
  // at positions [n_past(), n_past() + n_tokens), appending them to the cache, and writes `output`
  // to `out` (resized). Errors: input of the wrong kind or size, a full context, an output the
  // range cannot give, token ids outside the vocabulary.
  // `sums`: kAsGgml sums a batch as llama.cpp does (prompts: faster, and each row's bits do not
  // depend on how the batch is split into calls of two or more); kPerToken gives every row exactly
  // the bits it gets in a call of its own (the batch-invariance rule: drafted tokens verified in
  // one call must give what one call per token gives).
  Result<void> forward(std::span<const int32_t> tokens, std::span<const float> hidden, Output output,
                       std::vector<float>& out, kernels::ThreadPool& pool,
                       kernels::BatchSums sums = kernels::BatchSums::kAsGgml);

  uint32_t n_past() const { return cache_.size(); }
  uint32_t n_ctx() const { return cache_.n_ctx(); }
  Result<void> rollback(uint32_t n) { return cache_.rollback(n); }
  void reset() { cache_.clear(); }
  size_t kv_bytes() const { return cache_.bytes(); }
  uint32_t block_begin() const { return block_begin_; }
  uint32_t block_end() const { return block_end_; }

 private:
  Session(const Model& model, uint32_t block_begin, uint32_t block_end, uint32_t n_ctx);
  // `last_row_only`: after attention, keep only the last token's row (moved to row 0).
  void run_block(uint32_t layer, uint32_t n_tokens, uint32_t pos0, kernels::ThreadPool& pool, bool last_row_only);
  void attention(uint32_t block_index, uint32_t n_tokens, uint32_t pos0, kernels::ThreadPool& pool);
  void ensure_scratch(uint32_t n_tokens);

  const Model& model_;
  uint32_t block_begin_;
  uint32_t block_end_;
  KvCache cache_;

  // Scratch, grown to the largest batch seen and then reused: no allocation per token.
  kernels::BatchSums sums_ = kernels::BatchSums::kAsGgml;  // the running forward call's
  uint32_t scratch_tokens_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, qkv_, attn_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;  // per token of the batch: rope_dims / 2 values
  std::vector<float> rope_cos_swa_, rope_sin_swa_;  // the same for sliding-window layers with their own
                                                    // RoPE base (empty when the bases agree)
  std::vector<float> scores_;               // per thread: 4 x (n_ctx scores + a head row)
};

}  // namespace omni::model
