#include "model/perplexity.h"

#include <cmath>
#include <string>
#include <vector>

namespace omni::model {

Result<PerplexityResult> perplexity(const Model& model, std::span<const int32_t> tokens, uint32_t n_ctx,
                                    uint32_t n_chunks, std::optional<int32_t> bos, kernels::ThreadPool& pool) {
  if (n_ctx < 4) return Error{ErrorCode::InvalidArgument, "perplexity needs a context of at least 4 tokens"};
  if (n_chunks == 0) n_chunks = static_cast<uint32_t>(tokens.size() / n_ctx);
  if (n_chunks == 0 || uint64_t{n_chunks} * n_ctx > tokens.size())
    return Error{ErrorCode::InvalidArgument, "the text has " + std::to_string(tokens.size()) + " tokens, fewer than " +
                                                 std::to_string(n_chunks) + " chunks of " + std::to_string(n_ctx)};
  auto session = Session::create(model, 0, model.config().n_layer, n_ctx);
  if (!session) return session.error();
  const uint32_t n_vocab = model.config().n_vocab;
  const uint32_t first = n_ctx / 2;
  std::vector<int32_t> chunk(n_ctx);
  std::vector<float> logits;
  double nll = 0;
  uint64_t scored = 0;
  for (uint32_t c = 0; c < n_chunks; ++c) {
    std::copy_n(tokens.begin() + uint64_t{c} * n_ctx, n_ctx, chunk.begin());
    if (bos) chunk[0] = *bos;
    (*session)->reset();
    if (auto r = (*session)->forward(chunk, {}, Output::AllLogits, logits, pool); !r) return r.error();
    for (uint32_t i = first; i + 1 < n_ctx; ++i) {
      const float* row = logits.data() + uint64_t{i} * n_vocab;
      float max = row[0];
      for (uint32_t v = 1; v < n_vocab; ++v) max = std::max(max, row[v]);
      double sum = 0;
      for (uint32_t v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
      nll += std::log(sum) + max - row[chunk[i + 1]];
      ++scored;
    }
  }
  PerplexityResult r;
  r.mean_nll = nll / static_cast<double>(scored);
  r.perplexity = std::exp(r.mean_nll);
  r.scored_tokens = scored;
  r.chunks = n_chunks;
  return r;
}

}  // namespace omni::model
