// CIDs against independently computed ones: a constant published by IPFS, and python3's hashlib +
// base64.b32encode run on the same bytes at test time.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "base/parse.h"
#include "store/cid.h"
#include "store/manifest.h"

namespace omni::store {
namespace {

std::span<const uint8_t> bytes_of(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

// The CID python3 computes for `hex` (the input bytes in hex), or "" when python3 is unavailable.
std::string python_cid(const std::string& hex) {
  std::string cmd =
      "python3 -c \"import hashlib,base64,sys; d=bytes.fromhex(sys.argv[1]); "
      "b=bytes([1,0x55,0x12,0x20])+hashlib.sha256(d).digest(); "
      "print('b'+base64.b32encode(b).decode().lower().rstrip('='))\" '" + hex + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  char buf[256] = {};
  std::string out = std::fgets(buf, sizeof buf, p) ? buf : "";
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

TEST(Cid, EmptyBlockMatchesTheWellKnownIpfsCid) {
  // `ipfs add --raw-leaves --cid-version 1` of an empty file.
  EXPECT_EQ(Cid::of({}).to_string(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
}

TEST(Cid, MatchesPythonForVariousInputs) {
  std::mt19937 rng(7);
  std::vector<std::string> inputs{"", "hello world", "a"};
  for (size_t len : {1u, 31u, 32u, 33u, 1000u}) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    inputs.push_back(s);
  }
  for (const auto& in : inputs) {
    std::string hex = hex_encode(bytes_of(in));
    std::string expected = python_cid(hex);
    if (expected.empty()) GTEST_SKIP() << "python3 not available";
    Cid c = Cid::of(bytes_of(in));
    EXPECT_EQ(c.to_string(), expected) << "input hex " << hex;
    auto parsed = Cid::parse(expected);
    ASSERT_TRUE(parsed) << parsed.error().message;
    EXPECT_EQ(*parsed, c);
  }
}

TEST(Cid, ParseRejectsMalformedText) {
  std::string good = Cid::of(bytes_of("x")).to_string();
  EXPECT_FALSE(Cid::parse(""));
  EXPECT_FALSE(Cid::parse("z" + good.substr(1)));                  // another multibase
  EXPECT_FALSE(Cid::parse(good.substr(0, good.size() - 1)));       // truncated
  EXPECT_FALSE(Cid::parse(good + "a"));                            // too long
  EXPECT_FALSE(Cid::parse("bafyBEI"));                             // upper case
  EXPECT_FALSE(Cid::parse("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"));  // CIDv0
  auto msg = Cid::parse("b1234");
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, ErrorCode::InvalidArgument) << msg.error().message;
}

TEST(Manifest, EncodingIsCanonicalAndRoundTrips) {
  Manifest m;
  m.chunk_size = 4096;
  m.model = {"llama", "tiny", 2, 64, 100, 20, 12345, "7", true, std::vector<uint8_t>(32, 7)};
  for (uint32_t i = 0; i < 4; ++i) {
    ShardEntry s;
    s.role = i == 0 ? ShardRole::Embeddings : i == 3 ? ShardRole::Head : ShardRole::Block;
    s.block = i == 0 || i == 3 ? 0 : i - 1;
    s.size = 4096 * i + 5;
    s.cid = Cid::of(bytes_of(std::to_string(i)));
    for (uint64_t c = 0; c < chunk_count(s.size, m.chunk_size); ++c) s.chunk_hashes.push_back(sha256(bytes_of(std::to_string(c))));
    s.n_tensors = i;
    m.shards.push_back(s);
  }
  auto bytes = m.encode();
  auto back = Manifest::decode(bytes);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->encode(), bytes);
  EXPECT_EQ(back->model.name, "tiny");
  EXPECT_TRUE(back->model.tied_embeddings);
  ASSERT_EQ(back->shards.size(), 4u);
  EXPECT_EQ(back->shards[2].chunk_hashes, m.shards[2].chunk_hashes);
  EXPECT_EQ(back->block(1)->cid, m.shards[2].cid);

  // Damaged or foreign bytes are errors, never crashes.
  for (size_t i = 0; i < bytes.size(); i += 3) {
    auto copy = bytes;
    copy[i] ^= 0x5a;
    (void)Manifest::decode(copy);
  }
  EXPECT_FALSE(Manifest::decode(std::vector<uint8_t>(bytes.begin(), bytes.end() - 8)));
  EXPECT_FALSE(Manifest::decode(bytes_of("not a manifest!!")));
  Manifest bad = m;
  bad.shards.pop_back();  // no head
  EXPECT_FALSE(Manifest::decode(bad.encode()));
}

}  // namespace
}  // namespace omni::store
