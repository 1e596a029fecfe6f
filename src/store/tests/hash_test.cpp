// SHA-256: known answers, and agreement with OpenSSL (computed here through EVP directly) for
// every length around the block boundaries, any way of splitting the input, copies, and the
// one-pass chunk-and-stream hash the fetch uses.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <string>
#include <vector>

#include "base/parse.h"
#include "store/hash.h"

namespace omni::store {
namespace {

Digest openssl_sha256(std::span<const uint8_t> bytes) {
  Digest d{};
  unsigned int n = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), d.data(), &n, EVP_sha256(), nullptr), 1);
  return d;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::span<const uint8_t> text(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST(Sha256, KnownAnswers) {
  // FIPS 180-2 examples.
  EXPECT_EQ(hex_encode(sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_encode(sha256(text("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_encode(sha256(text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::cout << "SHA-NI in use: " << (Sha256::uses_sha_ni() ? "yes" : "no") << "\n";
}

TEST(Sha256, AgreesWithOpenSslForEveryLengthAndSplit) {
  auto data = random_bytes(4096 + 300, 1);
  std::mt19937 rng(2);
  for (size_t n = 0; n <= 300; ++n) {
    std::span<const uint8_t> msg(data.data(), n);
    EXPECT_EQ(sha256(msg), openssl_sha256(msg)) << n;
    Sha256 h;
    for (size_t off = 0; off < n;) {
      size_t take = std::min<size_t>(n - off, rng() % 130);
      h.update(msg.subspan(off, take));
      off += take;
    }
    EXPECT_EQ(h.finish(), openssl_sha256(msg)) << n;
  }
  EXPECT_EQ(sha256(data), openssl_sha256(data));
  // finish() resets: the same object hashes a second message from scratch.
  Sha256 h;
  h.update(text("abc"));
  (void)h.finish();
  h.update(data);
  EXPECT_EQ(h.finish(), openssl_sha256(data));
}

TEST(Sha256, CopiesContinueIndependently) {
  auto data = random_bytes(1000, 3);
  Sha256 a;
  a.update({data.data(), 100});
  Sha256 b = a;
  a.update({data.data() + 100, 900});
  b.update({data.data() + 100, 50});
  EXPECT_EQ(a.finish(), openssl_sha256(data));
  EXPECT_EQ(b.finish(), openssl_sha256({data.data(), 150}));
  Sha256 c;
  c.update({data.data(), 7});
  c = b;  // b was reset by finish(): c starts over
  c.update(data);
  EXPECT_EQ(c.finish(), openssl_sha256(data));
}

// The fetch's use: each chunk hashed alone and appended to the whole blob's stream, at block
// boundaries (1 MiB chunks) and off them (a stream with a partial block, chunks of odd sizes).
TEST(Sha256, UpdateAndHashGivesBothDigests) {
  auto data = random_bytes((1 << 20) + 5000, 4);
  for (std::vector<size_t> sizes : {std::vector<size_t>{1 << 20, 5000}, std::vector<size_t>{64, 128, 1, 63, 65, 4000},
                                    std::vector<size_t>{0, 33, 31, 100, 2000, 130}}) {
    Sha256 whole;
    size_t off = 0;
    for (size_t n : sizes) {
      std::span<const uint8_t> chunk(data.data() + off, n);
      EXPECT_EQ(whole.update_and_hash(chunk), openssl_sha256(chunk)) << "chunk at " << off << " of " << n;
      off += n;
    }
    EXPECT_EQ(whole.finish(), openssl_sha256({data.data(), off}));
  }
}

}  // namespace
}  // namespace omni::store
