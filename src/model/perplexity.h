// Perplexity of a model on a token sequence, computed the way llama.cpp's perplexity tool does:
// the tokens are cut into `n_chunks` consecutive chunks of `n_ctx`; each chunk runs as a fresh
// sequence with its first token replaced by BOS (when `bos` is given); only the second half is
// scored: the logits at positions n_ctx/2 .. n_ctx-2 predict the tokens that follow them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"

namespace omni::model {

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  uint64_t scored_tokens = 0;
  uint32_t chunks = 0;
};

// Errors: fewer than n_chunks * n_ctx tokens, n_ctx < 4, a model without its full block range.
Result<PerplexityResult> perplexity(const Model& model, std::span<const int32_t> tokens, uint32_t n_ctx,
                                    uint32_t n_chunks, std::optional<int32_t> bos, kernels::ThreadPool& pool);

}  // namespace omni::model
