#include "model/kv_cache.h"

#include <algorithm>
#include <string>

namespace omni::model {

KvCache::KvCache(uint32_t n_blocks, uint32_t n_ctx, uint32_t kv_dim)
    : n_ctx_(n_ctx),
      kv_dim_(kv_dim),
      keys_(size_t{n_blocks} * n_ctx * kv_dim),
      values_(size_t{n_blocks} * n_ctx * kv_dim) {}

Result<void> KvCache::extend(uint32_t n) {
  if (n > n_ctx_ - size_)
    return Error{ErrorCode::ResourceExhausted, "context is full: " + std::to_string(size_) + " + " + std::to_string(n) +
                                                   " positions exceed " + std::to_string(n_ctx_)};
  size_ += n;
  return {};
}

Result<void> KvCache::rollback(uint32_t n) {
  if (n > size_)
    return Error{ErrorCode::InvalidArgument,
                 "cannot roll back " + std::to_string(n) + " positions: only " + std::to_string(size_) + " are filled"};
  size_ -= n;
  return {};
}

Result<void> KvCache::copy_from(const KvCache& other) {
  if (other.kv_dim_ != kv_dim_ || other.keys_.size() / other.n_ctx_ != keys_.size() / n_ctx_)
    return Error{ErrorCode::InvalidArgument, "cannot copy a KV cache of another shape"};
  if (other.size_ > n_ctx_)
    return Error{ErrorCode::ResourceExhausted, "cannot copy " + std::to_string(other.size_) +
                                                   " positions into a context of " + std::to_string(n_ctx_)};
  const uint32_t blocks = static_cast<uint32_t>(keys_.size() / (size_t{n_ctx_} * kv_dim_));
  const size_t n = other.size_;
  for (uint32_t b = 0; b < blocks; ++b) {
    std::copy_n(other.key(b, 0), n * kv_dim_, key(b, 0));
    for (uint32_t d = 0; d < kv_dim_; ++d) std::copy_n(other.values(b, d), n, values(b, d));
  }
  size_ = other.size_;
  return {};
}

}  // namespace omni::model
