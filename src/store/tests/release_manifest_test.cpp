#include "store/release_manifest.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "store/model_download.h"

namespace omni::store {
namespace {

// A fresh Ed25519 key pair per test: signs with OpenSSL directly, as scripts/sign_release.sh does.
struct TestKey {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey{EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"),
                                                           EVP_PKEY_free};
  ReleaseKey public_key() const {
    ReleaseKey key{};
    size_t size = key.size();
    EXPECT_EQ(EVP_PKEY_get_raw_public_key(pkey.get(), key.data(), &size), 1);
    return key;
  }
  std::string sign_hex(const std::string& message) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()), 1);
    std::vector<uint8_t> sig(64);
    size_t size = sig.size();
    EXPECT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &size, reinterpret_cast<const uint8_t*>(message.data()),
                             message.size()),
              1);
    std::string hex;
    for (uint8_t b : sig) {
      static const char* digits = "0123456789abcdef";
      hex += digits[b >> 4];
      hex += digits[b & 15];
    }
    return hex;
  }
};

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

const std::string kSha = std::string(63, 'a') + "b";
const std::string kManifest = R"({"version": "0.2.0", "packages": {"amd64": {"url": "https://example.net/omni_0.2.0_amd64.deb", "sha256": ")" + kSha + R"("}}})";

TEST(ReleaseManifest, SignedManifestIsRead) {
  TestKey key;
  auto m = verify_release_manifest(bytes(kManifest), key.sign_hex(kManifest), key.public_key());
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->version, "0.2.0");
  ASSERT_EQ(m->packages.count("amd64"), 1u);
  EXPECT_EQ(m->packages.at("amd64").url, "https://example.net/omni_0.2.0_amd64.deb");
  EXPECT_EQ(m->packages.at("amd64").sha256, *parse_sha256_hex(kSha));
}

TEST(ReleaseManifest, AnyChangedByteIsRefused) {
  TestKey key;
  const std::string signature = key.sign_hex(kManifest);
  for (size_t i = 0; i < kManifest.size(); i += 7) {
    std::string tampered = kManifest;
    tampered[i] ^= 1;
    auto m = verify_release_manifest(bytes(tampered), signature, key.public_key());
    ASSERT_FALSE(m) << "byte " << i;
    EXPECT_TRUE(m.error().is(ErrorCode::Corruption));
  }
}

TEST(ReleaseManifest, OtherKeyOrBadSignatureIsRefused) {
  TestKey key, other;
  const std::string signature = key.sign_hex(kManifest);
  auto m = verify_release_manifest(bytes(kManifest), signature, other.public_key());
  ASSERT_FALSE(m);
  EXPECT_TRUE(m.error().is(ErrorCode::Corruption));
  std::string flipped = signature;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  EXPECT_TRUE(verify_release_manifest(bytes(kManifest), flipped, key.public_key()).error().is(ErrorCode::Corruption));
  EXPECT_TRUE(verify_release_manifest(bytes(kManifest), "zz", key.public_key()).error().is(ErrorCode::Corruption));
  EXPECT_TRUE(verify_release_manifest(bytes(kManifest), "", key.public_key()).error().is(ErrorCode::Corruption));
}

TEST(ReleaseManifest, SignedButMalformedIsInvalid) {
  TestKey key;
  for (const std::string& bad : {std::string("[]"), std::string(R"({"version": "x.1", "packages": {}})"),
                                std::string(R"({"version": "1.0", "packages": {"amd64": {"url": "ftp://a/b"}}})"),
                                std::string(R"({"version": "1.0", "packages": {"amd64": {"url": "http://a/b", "sha256": "12"}}})"),
                                std::string("not json")}) {
    auto m = verify_release_manifest(bytes(bad), key.sign_hex(bad), key.public_key());
    ASSERT_FALSE(m) << bad;
    EXPECT_TRUE(m.error().is(ErrorCode::InvalidArgument)) << bad << ": " << m.error().message;
  }
}

TEST(ReleaseManifest, ParseReleaseKey) {
  TestKey key;
  const ReleaseKey pub = key.public_key();
  std::string hex;
  for (uint8_t b : pub) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", b);
    hex += two;
  }
  auto parsed = parse_release_key(hex);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, pub);
  EXPECT_FALSE(parse_release_key(hex.substr(2)));
  EXPECT_FALSE(parse_release_key(std::string(64, 'g')));
}

TEST(ReleaseManifest, CompareVersions) {
  EXPECT_LT(*compare_versions("0.1.0", "0.2.0"), 0);
  EXPECT_GT(*compare_versions("0.10.1", "0.9"), 0);
  EXPECT_EQ(*compare_versions("1.2", "1.2.0"), 0);
  EXPECT_GT(*compare_versions("2", "1.99.99"), 0);
  EXPECT_FALSE(compare_versions("1.x", "1.0"));
  EXPECT_FALSE(compare_versions("1..0", "1.0"));
  EXPECT_FALSE(compare_versions("", "1.0"));
  EXPECT_TRUE(compare_versions("1.0", "-1").error().is(ErrorCode::InvalidArgument));
}

}  // namespace
}  // namespace omni::store
