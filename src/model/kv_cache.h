// KvCache: the keys and values of one sequence for a range of transformer blocks.
//
// Sized once for `n_ctx` positions (F16, as ggml's default cache type), so memory is known up front:
// bytes() = 2 * blocks * n_ctx * kv_dim * 2. Keys are stored a row per position; values transposed,
// a row of n_ctx positions per value dimension, so attention's weighted sum is a contiguous dot.
// Positions are appended in order; rollback drops the last n (speculative decoding and failover
// replay need it); copy_from forks a sequence (several completions of one prompt share its
// prefill). Entries past size() hold zeros or stale finite values; readers weight them 0.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace omni::model {

class KvCache {
 public:
  KvCache(uint32_t n_blocks, uint32_t n_ctx, uint32_t kv_dim);

  uint32_t n_ctx() const { return n_ctx_; }
  uint32_t size() const { return size_; }  // positions filled
  size_t bytes() const { return (keys_.size() + values_.size()) * sizeof(uint16_t); }

  // Row of `kv_dim` F16 keys for block index `b` (0-based within the range) at position `pos`.
  uint16_t* key(uint32_t b, uint32_t pos) { return keys_.data() + offset(b, pos); }
  const uint16_t* key(uint32_t b, uint32_t pos) const { return keys_.data() + offset(b, pos); }
  // Row of `n_ctx` F16 values of dimension `dim` (of kv_dim) for block index `b`, one per position.
  uint16_t* values(uint32_t b, uint32_t dim) { return values_.data() + offset(b, 0) + size_t{dim} * n_ctx_; }
  const uint16_t* values(uint32_t b, uint32_t dim) const {
    return values_.data() + offset(b, 0) + size_t{dim} * n_ctx_;
  }

  // Marks positions [size, size + n) as filled; an Error if that passes n_ctx.
  Result<void> extend(uint32_t n);
  // Forgets the last n positions; an Error if fewer are filled.
  Result<void> rollback(uint32_t n);
  void clear() { size_ = 0; }
  // Replaces this cache's contents with `other`'s filled positions (the same blocks and kv_dim; its
  // n_ctx may differ). Error: other holds more positions than this cache has room for, or a
  // different shape.
  Result<void> copy_from(const KvCache& other);

 private:
  size_t offset(uint32_t b, uint32_t pos) const { return (size_t{b} * n_ctx_ + pos) * kv_dim_; }

  uint32_t n_ctx_;
  uint32_t kv_dim_;
  uint32_t size_ = 0;
  std::vector<uint16_t> keys_;
  std::vector<uint16_t> values_;
};

}  // namespace omni::model
