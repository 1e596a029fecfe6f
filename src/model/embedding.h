// Embeddings: one vector for a token sequence, made from the model's final hidden states (the
// residual stream after the last block and the output norm: what the head reads), pooled over the
// tokens and L2-normalized, as llama.cpp's embedding mode computes them.
//
// The pooling is the model's: `{arch}.pooling_type` in the metadata, in llama.cpp's numbering
// (1 mean, 2 cls = the first token's state, 3 last token's). A generative model declares none; it
// gets mean pooling. Types without one vector per sequence (0 none, 4 rank) are refused.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"

namespace omni::model {

enum class Pooling { Mean, First, Last };

// The pooling `model` declares. Error (InvalidArgument): a pooling type this engine has no
// sequence vector for, named in the message.
Result<Pooling> pooling_of(const Model& model);

// The embedding of `tokens` (n_embd floats, unit length when `normalize`). Runs a Session of its
// own, `chunk` tokens per forward (bounded scratch). Errors: an empty sequence, a model without
// its whole block range and head, token ids outside the vocabulary, more tokens than `max_tokens`.
Result<std::vector<float>> embed(const Model& model, std::span<const int32_t> tokens, Pooling pooling, bool normalize,
                                 uint32_t max_tokens, kernels::ThreadPool& pool, uint32_t chunk = 512);

}  // namespace omni::model
