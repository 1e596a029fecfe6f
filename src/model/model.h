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
               // feed-forward sums are a single token's (they may differ in the last bits from the
               // same row computed in a batch)
  AllLogits,   // logits of every token, n_tokens x n_vocab
};

class Session;

// How Session::forward sums a batch's rows (see there).
enum class BatchSums { kAsGgml, kPerToken };

// One sequence's part of a step run by Session::forward_batch: what Session::forward takes, and
// where its result goes.
struct SequenceStep {
  Session* session = nullptr;
  std::span<const int32_t> tokens;
  std::span<const float> hidden;
  Output output = Output::LastLogits;
  std::vector<float>* out = nullptr;
  Result<void> result;
};

// Activations of the rows of a step, grown to the largest step seen and then reused, so steady-state
// steps do not allocate. Owned by whoever runs the steps (one per thread that runs them); opaque to
// it. Each Session has its own for Session::forward.
class StepScratch {
 public:
  StepScratch() = default;
  StepScratch(const StepScratch&) = delete;
  StepScratch& operator=(const StepScratch&) = delete;
  size_t bytes() const;

 private:
  friend class Session;
  struct Sequence {
    Session* session;
    SequenceStep* step;
    uint32_t n;       // rows in the current layer (1 once a pruned sequence kept its last row)
    uint32_t row0;    // first row in the scratch matrices
    uint32_t pos0;    // cache position of the step's first token
    uint32_t logits_row;  // its first row in the step's logits
    bool pruned;      // the model's last block keeps only its last row
  };
  struct AttentionItem {
    uint32_t sequence, head, t0;
  };
  void ensure(const ModelConfig& c, uint32_t rows, uint32_t max_ctx, int threads);

  std::vector<Sequence> sequences_;        // multi-row sequences first, then single-row ones
  std::vector<AttentionItem> attention_;   // the step's attention work, head-major per sequence
  uint32_t rows_ = 0;                      // rows in the current layer
  uint32_t single_rows_ = 0;               // of which the last ones are single-row sequences' rows
  uint32_t capacity_rows_ = 0;
  std::vector<float> x_, xn_, q_, k_, v_, qkv_, attn_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;          // per row: rope_dims / 2 values
  std::vector<float> rope_cos_swa_, rope_sin_swa_;  // the same for sliding-window layers with their own
                                                    // RoPE base (empty when the bases agree)
  std::vector<float> scores_;                       // per thread: 4 x (n_ctx scores + a head row)
  std::vector<float> logits_;                       // logits rows when several sequences want them
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
  // `sums`: kAsGgml sums a batch as llama.cpp does (prompts: faster); kPerToken gives every row
  // exactly the bits it gets in a call of its own (the batch-invariance rule: drafted tokens verified
  // in one call must give what one call per token gives), by running the rows one at a time.
  Result<void> forward(std::span<const int32_t> tokens, std::span<const float> hidden, Output output,
                       std::vector<float>& out, kernels::ThreadPool& pool, BatchSums sums = BatchSums::kAsGgml);

  // One step for several sessions at once (some in their prompt, some decoding): every matrix
  // multiply takes all their rows together, so the weights are read once per step; attention is
  // per session. Each step's result and output are bit for bit what forward() gives it alone,
  // whatever else is in the batch. A step whose input is bad, or whose session is another model's
  // or range's than the first good step's, or appears twice, gets its error and is not run; the
  // others run.
  static void forward_batch(std::span<SequenceStep> steps, StepScratch& scratch, kernels::ThreadPool& pool);

  uint32_t n_past() const { return cache_.size(); }
  uint32_t n_ctx() const { return cache_.n_ctx(); }
  Result<void> rollback(uint32_t n) { return cache_.rollback(n); }
  void reset() { cache_.clear(); }
  // Makes this session continue `other`'s sequence: its KV cache becomes a copy of other's, so the
  // next forward() gives bit for bit what other's would (a prompt prefilled once, then forked for
  // several completions). Error: another model or block range, or too small a context.
  Result<void> copy_from(const Session& other);
  size_t kv_bytes() const { return cache_.bytes(); }
  uint32_t block_begin() const { return block_begin_; }
  uint32_t block_end() const { return block_end_; }

 private:
  Session(const Model& model, uint32_t block_begin, uint32_t block_end, uint32_t n_ctx);
  Result<void> check(const SequenceStep& step) const;
  // `prune`: after attention, keep only the last row of the sequences marked pruned.
  static void run_block(const Model& model, uint32_t layer, uint32_t block_begin, StepScratch& s,
                        kernels::ThreadPool& pool, bool prune);
  static void attention(const Model& model, uint32_t layer, uint32_t block_begin, StepScratch& s,
                        kernels::ThreadPool& pool);

  const Model& model_;
  uint32_t block_begin_;
  uint32_t block_end_;
  KvCache cache_;
  StepScratch scratch_;
};

}  // namespace omni::model
