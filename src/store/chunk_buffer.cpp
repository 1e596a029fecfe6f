#include "store/chunk_buffer.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace omni::store {
namespace {

// Free buffers by capacity (powers of two, at least a page). The cap bounds what an idle process
// keeps: enough for several peers' windows of 1 MiB chunks.
class Pool {
 public:
  static constexpr size_t kMaxPooledBytes = 256u << 20;

  uint8_t* take(size_t capacity) {
    {
      std::lock_guard lock(mu_);
      auto it = free_.find(capacity);
      if (it != free_.end() && !it->second.empty()) {
        uint8_t* p = it->second.back();
        it->second.pop_back();
        pooled_ -= capacity;
        return p;
      }
    }
    void* p = std::aligned_alloc(ChunkBuffer::kAlignment, capacity);
    if (!p) throw std::bad_alloc();
    return static_cast<uint8_t*>(p);
  }

  void give(uint8_t* p, size_t capacity) {
    {
      std::lock_guard lock(mu_);
      if (pooled_ + capacity <= kMaxPooledBytes) {
        free_[capacity].push_back(p);
        pooled_ += capacity;
        return;
      }
    }
    std::free(p);
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<uint8_t*>> free_;
  size_t pooled_ = 0;
};

// Never destroyed: buffers may be dropped by threads that outlive static destruction's start.
Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

size_t capacity_for(size_t size) {
  size_t c = ChunkBuffer::kAlignment;
  while (c < size) c <<= 1;
  return c;
}

}  // namespace

ChunkBuffer ChunkBuffer::allocate(size_t size) {
  ChunkBuffer b;
  if (size == 0) return b;
  b.capacity_ = capacity_for(size);
  b.data_ = pool().take(b.capacity_);
  b.size_ = size;
  return b;
}

ChunkBuffer ChunkBuffer::copy_of(std::span<const uint8_t> bytes) {
  ChunkBuffer b = allocate(bytes.size());
  if (!bytes.empty()) std::memcpy(b.data_, bytes.data(), bytes.size());
  return b;
}

ChunkBuffer::ChunkBuffer(ChunkBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

ChunkBuffer& ChunkBuffer::operator=(ChunkBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

ChunkBuffer::~ChunkBuffer() { reset(); }

void ChunkBuffer::reset() {
  if (data_) pool().give(data_, capacity_);
  data_ = nullptr;
  size_ = capacity_ = 0;
}

}  // namespace omni::store
