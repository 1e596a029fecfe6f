// RawGguf: builds GGUF bytes field by field, independently of gguf::Writer, so tests can produce
// exactly the (possibly malformed) files they need.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace omni::gguf::testing {

struct RawGguf {
  std::vector<uint8_t> b;
  RawGguf& u8(uint8_t v) { return put(&v, 1); }
  RawGguf& u32(uint32_t v) { return put(&v, 4); }
  RawGguf& u64(uint64_t v) { return put(&v, 8); }
  RawGguf& f32(float v) { return put(&v, 4); }
  RawGguf& str(const std::string& s) { u64(s.size()); return put(s.data(), s.size()); }
  RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return u32(0x46554747).u32(version).u64(n_tensors).u64(n_kv);
  }
  RawGguf& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  RawGguf& kv_str(const std::string& key, const std::string& v) { return str(key).u32(8).str(v); }
  RawGguf& tensor(const std::string& name, std::vector<uint64_t> shape, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(shape.size()));
    for (uint64_t ne : shape) u64(ne);
    return u32(type).u64(offset);
  }
  RawGguf& pad(size_t alignment = 32) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
  RawGguf& zeros(size_t n) { b.resize(b.size() + n, 0); return *this; }
  RawGguf& put(const void* p, size_t n) {
    const uint8_t* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
};

}  // namespace omni::gguf::testing
