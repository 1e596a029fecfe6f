// SHA-256 (through OpenSSL's EVP interface) and the fixed-size digest type used across the store.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace omni::store {

using Digest = std::array<uint8_t, 32>;

// Incremental SHA-256. Copyable state is not needed; one hasher hashes one stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(std::span<const uint8_t> bytes);
  Digest finish();  // the hasher is reset afterwards and may hash a new stream

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Digest sha256(std::span<const uint8_t> bytes);
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace omni::store
