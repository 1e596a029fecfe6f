// ChunkBuffer: copies are page-aligned (direct I/O writes them as they are) and recycled instead of
// asking the system for fresh memory each time.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "store/chunk_buffer.h"

namespace omni::store {
namespace {

TEST(ChunkBuffer, CopiesAreAlignedAndRecycled) {
  std::vector<uint8_t> bytes(1 << 20 | 77);
  std::iota(bytes.begin(), bytes.end(), uint8_t{3});
  const uint8_t* first = nullptr;
  {
    ChunkBuffer b = ChunkBuffer::copy_of(bytes);
    ASSERT_EQ(b.size(), bytes.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % ChunkBuffer::kAlignment, 0u);
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), b.data()));
    ChunkBuffer moved = std::move(b);
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(moved.size(), bytes.size());
    first = moved.data();
  }
  // The same size class again: the freed buffer comes back rather than fresh memory.
  ChunkBuffer again = ChunkBuffer::copy_of({bytes.data(), bytes.size() - 5});
  EXPECT_EQ(again.data(), first);
  EXPECT_TRUE(ChunkBuffer::copy_of({}).empty());
}

}  // namespace
}  // namespace omni::store
