#include "swarm/signed_envelope.h"

#include <openssl/evp.h>

#include <cstring>
#include <memory>

#include "net/peer_id.h"

namespace omni::swarm {
namespace {

constexpr size_t kMagicBytes = 8;
constexpr size_t kFixedBytes = kMagicBytes + 4 + 32 + 64;

std::vector<uint8_t> signed_message(std::string_view domain, std::span<const uint8_t> payload) {
  std::vector<uint8_t> m(domain.size() + 1 + payload.size());
  std::memcpy(m.data(), domain.data(), domain.size());
  m[domain.size()] = 0;
  if (!payload.empty()) std::memcpy(m.data() + domain.size() + 1, payload.data(), payload.size());
  return m;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

uint32_t read_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

Result<std::vector<uint8_t>> seal_envelope(const EnvelopeKind& kind, std::string_view payload,
                                           const net::Identity& identity) {
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  const auto message = signed_message(kind.domain, bytes);
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  uint8_t signature[64];
  size_t sig_len = sizeof signature;
  auto* key = static_cast<EVP_PKEY*>(identity.evp_pkey());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), signature, &sig_len, message.data(), message.size()) != 1 || sig_len != 64)
    return Error{ErrorCode::Internal, "signing the " + std::string(kind.what) + " failed (OpenSSL)"};
  std::vector<uint8_t> out(kind.magic.begin(), kind.magic.end());
  const auto n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), bytes.begin(), bytes.end());
  out.insert(out.end(), identity.public_key().begin(), identity.public_key().end());
  out.insert(out.end(), signature, signature + 64);
  if (out.size() > kind.max_bytes)
    return Error{ErrorCode::InvalidArgument, "the " + std::string(kind.what) + " takes " + std::to_string(out.size()) +
                                                 " bytes, more than the " + std::to_string(kind.max_bytes) +
                                                 " allowed (too many addresses?)"};
  return out;
}

Result<OpenedEnvelope> open_envelope(const EnvelopeKind& kind, std::span<const uint8_t> bytes) {
  const std::string what(kind.what);
  if (bytes.size() > kind.max_bytes)
    return Error{ErrorCode::Corruption, what + " too large (" + std::to_string(bytes.size()) + " bytes)"};
  if (bytes.size() < kFixedBytes || std::memcmp(bytes.data(), kind.magic.data(), kMagicBytes) != 0)
    return Error{ErrorCode::Corruption, "not an omni " + what};
  const uint32_t n = read_u32(bytes.data() + kMagicBytes);
  if (bytes.size() != kFixedBytes + n)
    return Error{ErrorCode::Corruption, what + " length does not match its payload length"};
  auto payload = bytes.subspan(kMagicBytes + 4, n);
  std::span<const uint8_t, 32> public_key(bytes.data() + kMagicBytes + 4 + n, 32);
  const uint8_t* signature = public_key.data() + 32;

  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(), public_key.size()));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!key || !ctx) return Error{ErrorCode::Corruption, "the " + what + "'s public key is not a valid Ed25519 key"};
  const auto message = signed_message(kind.domain, payload);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestVerify(ctx.get(), signature, 64, message.data(), message.size()) != 1)
    return Error{ErrorCode::PermissionDenied, "bad " + what + " signature"};
  return OpenedEnvelope{std::string(reinterpret_cast<const char*>(payload.data()), payload.size()),
                        net::peer_id_from_public_key(public_key)};
}

}  // namespace omni::swarm
