// Work receipts: the signature covers the documented bytes (rebuilt here by hand and verified with
// OpenSSL directly), any changed field or a foreign key fails verification, receipts for another
// node, model, blocks or time are refused, and the wire form round-trips and refuses wrong sizes.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <capnp/message.h>
#include <cstring>
#include <functional>
#include <memory>

#include "net/peer_id.h"
#include "net/work_receipt.h"

namespace omni::net {
namespace {

constexpr uint64_t kNow = 1'800'000'000;

WorkReceipt sample(const std::string& node_id) {
  WorkReceipt r;
  r.node_id = node_id;
  for (size_t i = 0; i < r.session.size(); ++i) r.session[i] = static_cast<uint8_t>(i * 7 + 1);
  r.sequence = 3;
  r.tokens = 64;
  r.block_begin = 1;
  r.block_end = 3;
  r.model_id = std::string(32, '\x5a');
  r.issued_at = kNow;
  return r;
}

ReceiptExpectations expect_for(const std::string& node_id) {
  ReceiptExpectations e;
  e.node_id = node_id;
  e.model_id = std::string(32, '\x5a');
  e.node_begin = 0;
  e.node_end = 4;
  e.now = kNow;
  return e;
}

// The signed bytes as docs/protocol.md describes them, built independently of the library.
std::vector<uint8_t> documented_bytes(const WorkReceipt& r) {
  const char domain[] = "omni-work-receipt-v1";
  std::vector<uint8_t> b(domain, domain + sizeof domain);  // the 0 byte included
  b.insert(b.end(), r.client_key.begin(), r.client_key.end());
  b.push_back(static_cast<uint8_t>(r.node_id.size()));
  b.insert(b.end(), r.node_id.begin(), r.node_id.end());
  b.insert(b.end(), r.session.begin(), r.session.end());
  auto le = [&b](uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  le(r.sequence, 8);
  le(r.tokens, 4);
  le(r.block_begin, 4);
  le(r.block_end, 4);
  b.push_back(static_cast<uint8_t>(r.model_id.size()));
  b.insert(b.end(), r.model_id.begin(), r.model_id.end());
  le(r.issued_at, 8);
  return b;
}

bool openssl_verifies(const WorkReceipt& r, const std::vector<uint8_t>& message) {
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, r.client_key.data(), 32);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = key && ctx && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
                  EVP_DigestVerify(ctx, r.signature.data(), 64, message.data(), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  return ok;
}

class ReceiptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = Identity::generate();
    auto n = Identity::generate();
    ASSERT_TRUE(c.ok() && n.ok());
    client_ = std::make_unique<Identity>(*c);
    node_ = std::make_unique<Identity>(*n);
  }
  std::unique_ptr<Identity> client_, node_;
};

TEST_F(ReceiptTest, SignatureCoversTheDocumentedBytes) {
  WorkReceipt r = sample(node_->peer_id());
  ASSERT_TRUE(sign_receipt(r, *client_).ok());
  EXPECT_EQ(r.client_key, client_->public_key());
  EXPECT_EQ(r.client_id(), client_->peer_id());
  EXPECT_EQ(receipt_signed_bytes(r), documented_bytes(r));
  EXPECT_TRUE(openssl_verifies(r, documented_bytes(r)));
  EXPECT_TRUE(check_receipt(r, expect_for(node_->peer_id())).ok());
  EXPECT_EQ(r.work(), 64u * 2u);
}

TEST_F(ReceiptTest, EveryFieldIsSigned) {
  WorkReceipt signed_receipt = sample(node_->peer_id());
  ASSERT_TRUE(sign_receipt(signed_receipt, *client_).ok());
  // Each change keeps the receipt acceptable in every other way, so only the signature can refuse it.
  std::vector<std::function<void(WorkReceipt&)>> forgeries{
      [](WorkReceipt& r) { r.tokens = 6400; },       // a node inflating the count
      [](WorkReceipt& r) { r.sequence += 1; },       // a fresh key for a replay
      [](WorkReceipt& r) { r.session[0] ^= 1; },     // another session
      [](WorkReceipt& r) { r.block_begin = 0; },     // more blocks
      [](WorkReceipt& r) { r.block_end = 4; },
      [](WorkReceipt& r) { r.issued_at += 60; },     // refreshed for the time window
      [](WorkReceipt& r) { r.signature[10] ^= 0x40; },
  };
  for (size_t i = 0; i < forgeries.size(); ++i) {
    WorkReceipt r = signed_receipt;
    forgeries[i](r);
    auto c = check_receipt(r, expect_for(node_->peer_id()));
    ASSERT_FALSE(c.ok()) << "forgery " << i;
    EXPECT_EQ(c.error().code, ErrorCode::PermissionDenied) << "forgery " << i << ": " << c.error().message;
  }
  // Re-signed by another key: valid, but it names another payer, not the original client.
  WorkReceipt r = signed_receipt;
  ASSERT_TRUE(sign_receipt(r, *node_).ok());
  EXPECT_TRUE(check_receipt(r, expect_for(node_->peer_id())).ok());
  EXPECT_NE(r.client_id(), client_->peer_id());
  // The original key with another's signature.
  r.client_key = client_->public_key();
  EXPECT_EQ(check_receipt(r, expect_for(node_->peer_id())).error().code, ErrorCode::PermissionDenied);
}

TEST_F(ReceiptTest, RefusesReceiptsNotForThisNode) {
  auto other = Identity::generate();
  ASSERT_TRUE(other.ok());
  WorkReceipt r = sample(other->peer_id());
  ASSERT_TRUE(sign_receipt(r, *client_).ok());
  EXPECT_EQ(check_receipt(r, expect_for(node_->peer_id())).error().code, ErrorCode::InvalidArgument);

  auto refused = [&](std::function<void(WorkReceipt&)> change, std::function<void(ReceiptExpectations&)> expect) {
    WorkReceipt x = sample(node_->peer_id());
    change(x);
    EXPECT_TRUE(sign_receipt(x, *client_).ok());
    ReceiptExpectations e = expect_for(node_->peer_id());
    expect(e);
    auto c = check_receipt(x, e);
    return !c.ok() && c.error().code == ErrorCode::InvalidArgument;
  };
  auto same = [](WorkReceipt&) {};
  auto as_is = [](ReceiptExpectations&) {};
  EXPECT_TRUE(refused([](WorkReceipt& x) { x.model_id = std::string(32, 'b'); }, as_is));
  EXPECT_TRUE(refused([](WorkReceipt& x) { x.block_end = 5; }, as_is));
  EXPECT_TRUE(refused([](WorkReceipt& x) { x.block_begin = x.block_end; }, as_is));
  EXPECT_TRUE(refused(same, [](ReceiptExpectations& e) { e.node_begin = 2; }));
  EXPECT_TRUE(refused([](WorkReceipt& x) { x.tokens = 0; }, as_is));
  EXPECT_TRUE(refused([](WorkReceipt& x) { x.tokens = kMaxReceiptTokens + 1; }, as_is));
  EXPECT_TRUE(refused([](WorkReceipt& x) { x.sequence = 0; }, as_is));
  // Too old (a replay after the ledger may have forgotten it) and from the future.
  EXPECT_TRUE(refused(same, [](ReceiptExpectations& e) { e.now = kNow + e.max_age_s + 1; }));
  EXPECT_FALSE(refused(same, [](ReceiptExpectations& e) { e.now = kNow + e.max_age_s; }));
  EXPECT_TRUE(refused(same, [](ReceiptExpectations& e) { e.now = kNow - e.max_skew_s - 1; }));
  EXPECT_FALSE(refused(same, [](ReceiptExpectations& e) { e.now = kNow - e.max_skew_s; }));
}

TEST_F(ReceiptTest, WireFormRoundTripsAndRefusesWrongSizes) {
  WorkReceipt r = sample(node_->peer_id());
  ASSERT_TRUE(sign_receipt(r, *client_).ok());
  capnp::MallocMessageBuilder message;
  auto builder = message.initRoot<proto::WorkReceipt>();
  write_receipt(r, builder);
  auto back = read_receipt(builder.asReader());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(receipt_signed_bytes(*back), receipt_signed_bytes(r));
  EXPECT_EQ(back->signature, r.signature);
  EXPECT_TRUE(check_receipt(*back, expect_for(node_->peer_id())).ok());

  auto refused = [&](std::function<void(proto::WorkReceipt::Builder)> change) {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<proto::WorkReceipt>();
    write_receipt(r, b);
    change(b);
    auto x = read_receipt(b.asReader());
    return !x.ok() && x.error().code == ErrorCode::InvalidArgument;
  };
  std::vector<uint8_t> big(65, 1), short31(31, 1);
  EXPECT_TRUE(refused([&](auto b) { b.setClientKey(kj::arrayPtr(short31.data(), short31.size())); }));
  EXPECT_TRUE(refused([&](auto b) { b.setSession(kj::arrayPtr(short31.data(), 15)); }));
  EXPECT_TRUE(refused([&](auto b) { b.setSignature(kj::arrayPtr(big.data(), big.size())); }));
  EXPECT_TRUE(refused([&](auto b) { b.setModelId(kj::arrayPtr(big.data(), big.size())); }));
  EXPECT_TRUE(refused([&](auto b) { b.setNodeId("not a peer id"); }));
}

}  // namespace
}  // namespace omni::net
