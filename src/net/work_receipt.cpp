#include "net/work_receipt.h"

#include <openssl/evp.h>

#include <cstring>
#include <memory>

#include "net/peer_id.h"

namespace omni::net {
namespace {

constexpr char kDomain[] = "omni-work-receipt-v1";

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_bytes(std::vector<uint8_t>& out, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  out.insert(out.end(), p, p + n);
}
// Lengths are at most 255 here: read_receipt and check_receipt bound both strings well below.
void put_short_string(std::vector<uint8_t>& out, const std::string& s) {
  out.push_back(static_cast<uint8_t>(s.size()));
  put_bytes(out, s.data(), s.size());
}

struct CtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

}  // namespace

std::string receipt_model_id(const ModelIdentity& model) {
  return std::string(reinterpret_cast<const char*>(model.cid.digest.data()), model.cid.digest.size());
}

std::string WorkReceipt::client_id() const { return peer_id_from_public_key(client_key); }

std::vector<uint8_t> receipt_signed_bytes(const WorkReceipt& r) {
  std::vector<uint8_t> out;
  out.reserve(200);
  put_bytes(out, kDomain, sizeof kDomain);  // with its terminating 0
  put_bytes(out, r.client_key.data(), r.client_key.size());
  put_short_string(out, r.node_id.substr(0, 255));
  put_bytes(out, r.session.data(), r.session.size());
  put_u64(out, r.sequence);
  put_u32(out, r.tokens);
  put_u32(out, r.block_begin);
  put_u32(out, r.block_end);
  put_short_string(out, r.model_id.substr(0, 255));
  put_u64(out, r.issued_at);
  return out;
}

Result<void> sign_receipt(WorkReceipt& receipt, const Identity& signer) {
  receipt.client_key = signer.public_key();
  const auto message = receipt_signed_bytes(receipt);
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  size_t length = receipt.signature.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, static_cast<EVP_PKEY*>(signer.evp_pkey())) != 1 ||
      EVP_DigestSign(ctx.get(), receipt.signature.data(), &length, message.data(), message.size()) != 1 ||
      length != receipt.signature.size())
    return Error{ErrorCode::Internal, "cannot sign a work receipt (OpenSSL Ed25519 failed)"};
  return {};
}

Result<void> check_receipt(const WorkReceipt& r, const ReceiptExpectations& expect) {
  if (r.node_id != expect.node_id)
    return Error{ErrorCode::InvalidArgument, "the receipt pays node " + r.node_id + ", not this node (" +
                                                 expect.node_id + ")"};
  if (r.model_id != expect.model_id)
    return Error{ErrorCode::InvalidArgument, "the receipt is for another model than the one this node serves"};
  if (r.block_begin >= r.block_end || r.block_begin < expect.node_begin || r.block_end > expect.node_end)
    return Error{ErrorCode::InvalidArgument, "the receipt's blocks [" + std::to_string(r.block_begin) + ", " +
                                                 std::to_string(r.block_end) + ") are not within the blocks [" +
                                                 std::to_string(expect.node_begin) + ", " +
                                                 std::to_string(expect.node_end) + ") this node serves"};
  if (r.tokens == 0 || r.tokens > kMaxReceiptTokens)
    return Error{ErrorCode::InvalidArgument, "the receipt's tokens (" + std::to_string(r.tokens) +
                                                 ") are not within 1.." + std::to_string(kMaxReceiptTokens)};
  if (r.sequence == 0) return Error{ErrorCode::InvalidArgument, "the receipt's sequence starts at 1, not 0"};
  if (r.issued_at + expect.max_age_s < expect.now || r.issued_at > expect.now + expect.max_skew_s)
    return Error{ErrorCode::InvalidArgument, "the receipt was issued at " + std::to_string(r.issued_at) +
                                                 ", outside this node's window [now - " +
                                                 std::to_string(expect.max_age_s) + " s, now + " +
                                                 std::to_string(expect.max_skew_s) + " s] (now " +
                                                 std::to_string(expect.now) + ")"};
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, r.client_key.data(), r.client_key.size()));
  if (!key) return Error{ErrorCode::PermissionDenied, "the receipt's client key is not an Ed25519 public key"};
  const auto message = receipt_signed_bytes(r);
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1)
    return Error{ErrorCode::Internal, "cannot verify a work receipt (OpenSSL Ed25519 failed)"};
  if (EVP_DigestVerify(ctx.get(), r.signature.data(), r.signature.size(), message.data(), message.size()) != 1)
    return Error{ErrorCode::PermissionDenied,
                 "the receipt's signature does not verify under its client key " + r.client_id()};
  return {};
}

void write_receipt(const WorkReceipt& r, proto::WorkReceipt::Builder out) {
  out.setClientKey(kj::arrayPtr(r.client_key.data(), r.client_key.size()));
  out.setNodeId(r.node_id.c_str());
  out.setSession(kj::arrayPtr(r.session.data(), r.session.size()));
  out.setSequence(r.sequence);
  out.setTokens(r.tokens);
  out.setBlockBegin(r.block_begin);
  out.setBlockEnd(r.block_end);
  out.setModelId(kj::arrayPtr(reinterpret_cast<const kj::byte*>(r.model_id.data()), r.model_id.size()));
  out.setIssuedAt(r.issued_at);
  out.setSignature(kj::arrayPtr(r.signature.data(), r.signature.size()));
}

Result<WorkReceipt> read_receipt(proto::WorkReceipt::Reader in) {
  WorkReceipt r;
  auto fixed = [](capnp::Data::Reader data, auto& out, const char* field) -> Result<void> {
    if (data.size() != out.size())
      return Error{ErrorCode::InvalidArgument, std::string("the receipt's ") + field + " has " +
                                                   std::to_string(data.size()) + " bytes, not " +
                                                   std::to_string(out.size())};
    std::memcpy(out.data(), data.begin(), out.size());
    return {};
  };
  if (auto f = fixed(in.getClientKey(), r.client_key, "clientKey"); !f) return f.error();
  if (auto f = fixed(in.getSession(), r.session, "session"); !f) return f.error();
  if (auto f = fixed(in.getSignature(), r.signature, "signature"); !f) return f.error();
  auto node = in.getNodeId();
  if (!is_peer_id(std::string_view(node.cStr(), node.size())))
    return Error{ErrorCode::InvalidArgument, "the receipt's nodeId is not a peer id"};
  r.node_id = node.cStr();
  auto model = in.getModelId();
  if (model.size() > kMaxReceiptModelIdBytes)
    return Error{ErrorCode::InvalidArgument, "the receipt's modelId has " + std::to_string(model.size()) +
                                                 " bytes, more than " + std::to_string(kMaxReceiptModelIdBytes)};
  r.model_id.assign(reinterpret_cast<const char*>(model.begin()), model.size());
  r.sequence = in.getSequence();
  r.tokens = in.getTokens();
  r.block_begin = in.getBlockBegin();
  r.block_end = in.getBlockEnd();
  r.issued_at = in.getIssuedAt();
  return r;
}

}  // namespace omni::net
