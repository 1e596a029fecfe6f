// SHA-256 and the fixed-size digest type used across the store.
//
// On x86-64 CPUs with the SHA extensions (SHA-NI) the compression runs on those instructions here;
// elsewhere OpenSSL's EVP interface does the work (its own SHA-NI code is single-stream and cannot
// share work between two hashes). Sha256::update_and_hash is the reason for the own SHA-NI code: a
// fetched chunk must be hashed alone (against the manifest) and also as part of its whole blob
// (against the CID); with SHA-NI both hashes come from one pass, sharing the loads and the message
// schedule, with the two round chains interleaved — SHA-NI rounds are latency-bound, so the second
// hash costs little. Results are identical on both paths (tested against OpenSSL).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace omni::store {

using Digest = std::array<uint8_t, 32>;

// Incremental SHA-256. Copyable (a copy continues independently from the same point).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256& other);
  Sha256& operator=(const Sha256& other);
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(std::span<const uint8_t> bytes);
  Digest finish();  // the hasher is reset afterwards and may hash a new stream

  // Appends `chunk` to this stream and returns the digest of `chunk` as a message of its own, in
  // one pass over its bytes when SHA-NI is in use and this stream is at a 64-byte boundary.
  Digest update_and_hash(std::span<const uint8_t> chunk);

  // Whether the SHA-NI code is in use on this CPU.
  static bool uses_sha_ni();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Digest sha256(std::span<const uint8_t> bytes);

}  // namespace omni::store
