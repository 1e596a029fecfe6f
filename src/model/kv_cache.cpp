#include "model/kv_cache.h"

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

}  // namespace omni::model
