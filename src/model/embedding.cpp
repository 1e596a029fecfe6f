#include "model/embedding.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/ops.h"

namespace omni::model {

Result<Pooling> pooling_of(const Model& model) {
  const std::string key = model.config().arch_name + ".pooling_type";
  const auto* value = model.file().metadata().find(key);
  if (!value) return Pooling::Mean;
  const auto type = value->as_int();
  if (!type) return Error{ErrorCode::InvalidArgument, key + " is not an integer"};
  switch (*type) {
    case 1: return Pooling::Mean;
    case 2: return Pooling::First;
    case 3: return Pooling::Last;
    default:
      return Error{ErrorCode::InvalidArgument, key + " = " + std::to_string(*type) +
                                                   " (none or rank) gives no single vector per input"};
  }
}

Result<std::vector<float>> embed(const Model& model, std::span<const int32_t> tokens, Pooling pooling, bool normalize,
                                 uint32_t max_tokens, kernels::ThreadPool& pool, uint32_t chunk) {
  const ModelConfig& c = model.config();
  if (tokens.empty()) return Error{ErrorCode::InvalidArgument, "nothing to embed: no tokens"};
  if (tokens.size() > max_tokens)
    return Error{ErrorCode::InvalidArgument, "the input has " + std::to_string(tokens.size()) +
                                                 " tokens; at most " + std::to_string(max_tokens) + " are embedded"};
  if (!model.weights().output_norm)
    return Error{ErrorCode::InvalidArgument, "embeddings need the model's last block and output norm"};
  auto session = Session::create(model, 0, c.n_layer, static_cast<uint32_t>(tokens.size()));
  if (!session) return session.error();
  chunk = std::max<uint32_t>(chunk, 1);
  std::vector<double> sum(c.n_embd, 0.0);
  std::vector<float> hidden, normed(c.n_embd);
  for (size_t begin = 0; begin < tokens.size(); begin += chunk) {
    const auto part = tokens.subspan(begin, std::min<size_t>(chunk, tokens.size() - begin));
    if (auto r = (*session)->forward(part, {}, Output::Hidden, hidden, pool); !r) return r.error();
    for (size_t t = 0; t < part.size(); ++t) {
      const size_t position = begin + t;
      const bool wanted = pooling == Pooling::Mean || (pooling == Pooling::First && position == 0) ||
                          (pooling == Pooling::Last && position + 1 == tokens.size());
      if (!wanted) continue;
      kernels::rms_norm(hidden.data() + t * c.n_embd, model.weights().output_norm.data, normed.data(), c.n_embd,
                        c.rms_eps);
      for (uint32_t i = 0; i < c.n_embd; ++i) sum[i] += normed[i];
    }
  }
  const double count = pooling == Pooling::Mean ? static_cast<double>(tokens.size()) : 1.0;
  double norm2 = 0;
  for (double& v : sum) {
    v /= count;
    norm2 += v * v;
  }
  // A zero vector stays zero rather than becoming NaN.
  const double scale = normalize && norm2 > 0 ? 1.0 / std::sqrt(norm2) : 1.0;
  std::vector<float> out(c.n_embd);
  for (uint32_t i = 0; i < c.n_embd; ++i) out[i] = static_cast<float>(sum[i] * scale);
  return out;
}

}  // namespace omni::model
