#include "store/hash.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace omni::store {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

namespace {
// EVP failures here mean an out-of-memory or a broken OpenSSL build; nothing sensible can follow.
void check(int ok) {
  if (ok != 1) std::abort();
}
}  // namespace

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  if (!ctx_->md) std::abort();
  check(EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr));
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const uint8_t> bytes) {
  if (!bytes.empty()) check(EVP_DigestUpdate(ctx_->md, bytes.data(), bytes.size()));
}

Digest Sha256::finish() {
  Digest d{};
  unsigned int n = 0;
  check(EVP_DigestFinal_ex(ctx_->md, d.data(), &n));
  if (n != d.size()) std::abort();
  check(EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr));
  return d;
}

Digest sha256(std::span<const uint8_t> bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

}  // namespace omni::store
