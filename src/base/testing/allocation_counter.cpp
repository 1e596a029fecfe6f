#include "base/testing/allocation_counter.h"

#include <cstdlib>
#include <new>

namespace omni::test_support {
std::atomic<bool> g_counting{false};
std::atomic<size_t> g_allocations{0};
}  // namespace omni::test_support

#ifndef OMNI_SANITIZED
#if defined(__GNUC__) && !defined(__clang__)
// These replacements pair malloc with free themselves; GCC sees the inlined free of a new'd pointer.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
void count() {
  if (omni::test_support::g_counting.load(std::memory_order_relaxed))
    omni::test_support::g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

void* operator new(size_t size) {
  count();
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, std::align_val_t align) {
  count();
  const size_t a = static_cast<size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size, std::align_val_t align) { return operator new(size, align); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
#endif  // OMNI_SANITIZED
