#include "net/forward_attestation.h"

#include <openssl/evp.h>

#include <memory>

#include "net/peer_id.h"

namespace omni::net {
namespace {

constexpr char kDomain[] = "omninode/forward-attestation/1";
// A per-token call signs under its own domain: the flag cannot be flipped without the signature
// breaking, and calls without it keep the bytes they always had.
constexpr char kPerTokenDomain[] = "omninode/forward-attestation/per-token/1";

template <class T>
void put_le(std::vector<uint8_t>& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
}

template <size_t N>
void put(std::vector<uint8_t>& out, const std::array<uint8_t, N>& a) {
  out.insert(out.end(), a.begin(), a.end());
}

Sha256 digest(uint8_t kind, std::span<const uint8_t> bytes) {
  Sha256 out{};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  // Failing only without memory, which SHA-256 over a buffer already held does not need more of.
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 || EVP_DigestUpdate(ctx.get(), &kind, 1) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), nullptr) != 1)
    out.fill(0);
  return out;
}

using PkeyCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

}  // namespace

std::vector<uint8_t> ForwardAttestation::signed_bytes() const {
  std::vector<uint8_t> out = per_token_sums  // with its NUL: a fixed separator
                                 ? std::vector<uint8_t>(kPerTokenDomain, kPerTokenDomain + sizeof kPerTokenDomain)
                                 : std::vector<uint8_t>(kDomain, kDomain + sizeof kDomain);
  put_le<uint32_t>(out, static_cast<uint32_t>(model_cid_digest.size()));
  out.insert(out.end(), model_cid_digest.begin(), model_cid_digest.end());
  put_le(out, model_file_size);
  put_le(out, block_begin);
  put_le(out, block_end);
  put(out, session_nonce);
  put_le(out, position);
  put_le(out, n_tokens);
  put_le(out, output_rows);
  put(out, input_sha256);
  put(out, output_sha256);
  put(out, public_key);
  return out;
}

std::string ForwardAttestation::peer_id() const { return peer_id_from_public_key(public_key); }

Sha256 tokens_digest(std::span<const int32_t> tokens) {
  std::vector<uint8_t> bytes;
  bytes.reserve(tokens.size() * 4);
  for (int32_t t : tokens) put_le(bytes, static_cast<uint32_t>(t));
  return digest(0, bytes);
}

Sha256 hidden_digest(HiddenEncoding encoding, std::span<const uint8_t> bytes) {
  return digest(static_cast<uint8_t>(1 + static_cast<uint8_t>(encoding)), bytes);
}

Result<void> sign_attestation(ForwardAttestation& attestation, const Identity& identity) {
  attestation.public_key = identity.public_key();
  const auto message = attestation.signed_bytes();
  PkeyCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t length = attestation.signature.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, static_cast<EVP_PKEY*>(identity.evp_pkey())) != 1 ||
      EVP_DigestSign(ctx.get(), attestation.signature.data(), &length, message.data(), message.size()) != 1 ||
      length != attestation.signature.size())
    return Error{ErrorCode::Internal, "signing a forward attestation failed (OpenSSL)"};
  return {};
}

Result<void> verify_attestation(const ForwardAttestation& attestation) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, attestation.public_key.data(), attestation.public_key.size()),
      EVP_PKEY_free);
  const auto message = attestation.signed_bytes();
  PkeyCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestVerify(ctx.get(), attestation.signature.data(), attestation.signature.size(), message.data(),
                       message.size()) != 1)
    return Error{ErrorCode::PermissionDenied,
                 "the forward attestation of " + attestation.peer_id() + " does not carry its valid signature"};
  return {};
}

std::string attestation_model_digest(const ModelIdentity& model) {
  return std::string(reinterpret_cast<const char*>(model.cid.digest.data()), model.cid.digest.size());
}

Result<ForwardAttestation> read_attestation(proto::ForwardAttestation::Reader reader, const ModelIdentity& model,
                                            uint32_t block_begin, uint32_t block_end) {
  ForwardAttestation a;
  a.model_cid_digest = attestation_model_digest(model);
  a.model_file_size = model.file_size;
  a.block_begin = block_begin;
  a.block_end = block_end;
  a.position = reader.getPosition();
  a.n_tokens = reader.getNTokens();
  a.output_rows = reader.getOutputRows();
  a.per_token_sums = reader.getPerTokenSums();
  auto take = [](capnp::Data::Reader from, auto& to, const char* field) -> Result<void> {
    if (from.size() != to.size())
      return Error{ErrorCode::InvalidArgument, std::string("the reply's attestation has a ") + field + " of " +
                                                   std::to_string(from.size()) + " bytes, not " +
                                                   std::to_string(to.size())};
    std::copy(from.begin(), from.end(), to.begin());
    return {};
  };
  for (auto r : {take(reader.getSessionNonce(), a.session_nonce, "sessionNonce"),
                 take(reader.getInputSha256(), a.input_sha256, "inputSha256"),
                 take(reader.getOutputSha256(), a.output_sha256, "outputSha256"),
                 take(reader.getPublicKey(), a.public_key, "publicKey"),
                 take(reader.getSignature(), a.signature, "signature")})
    if (!r) return r.error();
  return a;
}

}  // namespace omni::net
