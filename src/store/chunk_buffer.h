// ChunkBuffer: the bytes of one chunk in transit, in a page-aligned buffer that is recycled.
//
// Page alignment lets the blob store write a chunk with direct I/O straight from the buffer.
// Recycling matters because fresh memory is expensive where it counts: a new page costs a fault
// and zeroing (and, in VMs that report free pages to the host, a host fault too), so a transfer
// that allocated a fresh megabyte per chunk would pay that for every byte it moves. Freed buffers
// go to a process-wide pool (bounded; the excess is returned to the system). Move-only; any thread
// may create or drop one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace omni::store {

class ChunkBuffer {
 public:
  static constexpr size_t kAlignment = 4096;

  ChunkBuffer() = default;
  // A copy of `bytes` (capacity: a power of two, at least a page).
  static ChunkBuffer copy_of(std::span<const uint8_t> bytes);

  ChunkBuffer(ChunkBuffer&& other) noexcept;
  ChunkBuffer& operator=(ChunkBuffer&& other) noexcept;
  ChunkBuffer(const ChunkBuffer&) = delete;
  ChunkBuffer& operator=(const ChunkBuffer&) = delete;
  ~ChunkBuffer();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  static ChunkBuffer allocate(size_t size);
  void reset();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace omni::store
