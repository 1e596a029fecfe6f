// Allocation counting for tests that check a hot path allocates nothing once warm. A test program
// that links allocation_counter.cpp (omni_add_test SOURCES ${OMNI_ALLOCATION_COUNTER}) has the
// global operator new and delete replaced by malloc-backed ones that count every allocation, by
// any thread, while g_counting is set. Under a sanitizer, whose runtime owns operator new, nothing
// is replaced and kCountsAllocations is false: such checks skip.
#pragma once

#include <atomic>
#include <cstddef>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)  // GCC
#define OMNI_SANITIZED
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)  // Clang
#define OMNI_SANITIZED
#endif
#endif

namespace omni::test_support {

#ifdef OMNI_SANITIZED
inline constexpr bool kCountsAllocations = false;
#else
inline constexpr bool kCountsAllocations = true;
#endif

extern std::atomic<bool> g_counting;
extern std::atomic<size_t> g_allocations;

}  // namespace omni::test_support
