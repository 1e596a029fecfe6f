#include "store/model_download.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <random>

#include "base/parse.h"
#include "fake_http.h"
#include "test_util.h"

namespace omni::store {
namespace {

using testing::FakeHttp;
using testing::ScratchDir;

constexpr const char* kUrl = "https://files.example/models/tiny.gguf";

std::vector<uint8_t> gguf_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  std::copy_n("GGUF", 4, b.begin());
  return b;
}

std::string hex_sha(const std::vector<uint8_t>& b) { return hex_encode(sha256(b)); }

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

size_t count_files(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return 0;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, ec); it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}

class ModelDownloadTest : public ::testing::Test {
 protected:
  ModelDownloadTest() {
    options.store_dir = dir / "store";
    options.http = &http;
    options.attempts = 1;
    options.retry_delay = std::chrono::milliseconds(1);
    options.sync_bytes = 256 << 10;
  }
  void serve(const std::vector<uint8_t>& body, const std::string& etag = "\"v1\"", bool publish_hash = true) {
    FakeHttp::Resource& r = http.resources[kUrl];
    r.body = body;
    r.etag = etag;
    r.linked_etag = publish_hash ? "\"" + hex_sha(body) + "\"" : "";
  }
  ScratchDir dir;
  FakeHttp http;
  ModelFetchOptions options;
};

TEST_F(ModelDownloadTest, DownloadsVerifiesAndLaterUsesTheCacheWithoutNetwork) {
  const auto body = gguf_bytes(3 << 20, 1);
  serve(body);
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_FALSE(got->from_cache);
  EXPECT_EQ(got->fetched_bytes, body.size());
  EXPECT_EQ(got->cid.digest, sha256(body));
  EXPECT_EQ(std::filesystem::path(got->path).filename(), "tiny.gguf");
  EXPECT_EQ(read_all(got->path), body);
  EXPECT_EQ(count_files(options.store_dir + "/downloads"), 0u);  // no partial file left

  http.refuse_all = true;
  http.requests.clear();
  auto again = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_TRUE(again->from_cache);
  EXPECT_EQ(again->path, got->path);
  EXPECT_TRUE(http.requests.empty());
}

TEST_F(ModelDownloadTest, InterruptedDownloadIsKeptAndResumedFromItsDurableBytes) {
  const auto body = gguf_bytes(3 << 20, 2);
  serve(body);
  http.cut_after = (3 << 20) / 2 + 1000;
  auto first = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(first.ok());
  EXPECT_TRUE(first.error().is(ErrorCode::Unavailable)) << first.error().message;
  EXPECT_NE(first.error().message.find("run again to resume"), std::string::npos) << first.error().message;
  EXPECT_EQ(count_files(options.store_dir + "/models"), 0u);  // never a model while partial

  http.requests.clear();
  auto second = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(second.ok()) << second.error().message;
  ASSERT_EQ(http.requests.size(), 1u);
  const auto& req = http.requests[0];
  ASSERT_TRUE(req.headers.count("Range"));
  EXPECT_EQ(req.headers.at("If-Range"), "\"v1\"");
  // All that arrived before the cut was made durable when the transfer broke.
  const uint64_t from = std::stoull(req.headers.at("Range").substr(6));
  EXPECT_EQ(from, (3u << 20) / 2 + 1000);
  EXPECT_EQ(req.body_bytes, body.size() - from);
  EXPECT_EQ(second->fetched_bytes, body.size() - from);
  EXPECT_EQ(read_all(second->path), body);
}

TEST_F(ModelDownloadTest, RetriesABrokenTransferWithinOneCall) {
  const auto body = gguf_bytes(1 << 20, 3);
  serve(body);
  options.attempts = 3;
  http.cut_after = 300000;
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(http.requests.size(), 2u);
  EXPECT_EQ(http.requests[1].headers.at("Range"), "bytes=300000-");
  EXPECT_EQ(http.requests[0].body_bytes + http.requests[1].body_bytes, body.size());
  EXPECT_EQ(read_all(got->path), body);
}

TEST_F(ModelDownloadTest, ABodyShortOfItsLengthIsRetried) {
  const auto body = gguf_bytes(1 << 20, 4);
  serve(body);
  options.attempts = 2;
  http.cut_after = 100000;
  http.cut_quietly = true;
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(http.requests.size(), 2u);
  EXPECT_EQ(read_all(got->path), body);
}

TEST_F(ModelDownloadTest, AFileChangedUpstreamIsFetchedAgainWhole) {
  serve(gguf_bytes(1 << 20, 5), "\"old\"");
  http.cut_after = 500000;
  ASSERT_FALSE(fetch_model_url(kUrl, "tiny.gguf", options).ok());
  const auto fresh = gguf_bytes(900000, 6);
  serve(fresh, "\"new\"");
  http.requests.clear();
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(http.requests.size(), 1u);
  EXPECT_EQ(http.requests[0].headers.at("If-Range"), "\"old\"");  // asked to resume; got 200
  EXPECT_EQ(read_all(got->path), fresh);
}

TEST_F(ModelDownloadTest, WrongPublishedHashDeletesTheDownloadAndNamesBothHashes) {
  const auto body = gguf_bytes(1 << 20, 7);
  const auto other = gguf_bytes(1 << 20, 8);
  serve(body);
  http.resources[kUrl].linked_etag = "\"" + hex_sha(other) + "\"";
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.error().is(ErrorCode::Corruption)) << got.error().message;
  EXPECT_NE(got.error().message.find(hex_sha(other)), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find(hex_sha(body)), std::string::npos) << got.error().message;
  EXPECT_EQ(count_files(options.store_dir + "/downloads"), 0u);
  EXPECT_EQ(count_files(options.store_dir + "/blobs"), 0u);
  EXPECT_EQ(count_files(options.store_dir + "/models"), 0u);
}

TEST_F(ModelDownloadTest, PinnedHashThatTheHostContradictsFailsBeforeTheBody) {
  const auto body = gguf_bytes(1 << 20, 9);
  serve(body);
  options.sha256 = sha256(gguf_bytes(10, 10));
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.error().is(ErrorCode::Corruption)) << got.error().message;
  ASSERT_EQ(http.requests.size(), 1u);
  EXPECT_EQ(http.requests[0].body_bytes, 0u);
}

TEST_F(ModelDownloadTest, PinnedHashIsCheckedWhenTheHostPublishesNone) {
  const auto body = gguf_bytes(1 << 20, 11);
  serve(body, "\"v1\"", /*publish_hash=*/false);
  options.sha256 = sha256(gguf_bytes(1 << 20, 12));
  auto bad = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.error().is(ErrorCode::Corruption)) << bad.error().message;
  EXPECT_EQ(count_files(options.store_dir + "/blobs"), 0u);
  options.sha256 = sha256(body);
  auto good = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(good->cid.digest, sha256(body));
}

TEST_F(ModelDownloadTest, HuggingFaceETagCountsAsTheHashOnlyOnItsHosts) {
  const auto body = gguf_bytes(1 << 20, 13);
  const std::string wrong = "\"" + hex_sha(gguf_bytes(5, 14)) + "\"";
  http.resources[kUrl] = {body, wrong, "", "", 0, true};
  ASSERT_TRUE(fetch_model_url(kUrl, "tiny.gguf", options).ok());  // another host's ETag is opaque
  const std::string hf = "https://huggingface.co/org/repo/resolve/main/tiny.gguf";
  http.resources[hf] = {body, wrong, "", "", 0, true};
  auto got = fetch_model_url(hf, "tiny.gguf", options);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.error().is(ErrorCode::Corruption)) << got.error().message;
}

TEST_F(ModelDownloadTest, FollowsRedirectsWithTheirHashHeaderAndBoundsThem) {
  const auto body = gguf_bytes(1 << 20, 15);
  const std::string cdn = "https://cdn.example/blob/abc";
  http.resources[kUrl] = {{}, "", "\"" + hex_sha(body) + "\"", "/step/two", 0, true};
  http.resources["https://files.example/step/two"] = {{}, "", "", "three", 0, true};
  http.resources["https://files.example/step/three"] = {{}, "", "", cdn, 0, true};
  http.resources[cdn] = {body, "\"e\"", "", "", 0, true};
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(http.requests.size(), 4u);
  EXPECT_EQ(read_all(got->path), body);

  const std::string loop = "https://loop.example/a.gguf";
  http.resources[loop] = {{}, "", "", loop, 0, true};
  options.max_redirects = 5;
  auto looped = fetch_model_url(loop, "a.gguf", options);
  ASSERT_FALSE(looped.ok());
  EXPECT_TRUE(looped.error().is(ErrorCode::InvalidArgument)) << looped.error().message;

  const std::string down = "https://down.example/a.gguf";
  http.resources[down] = {{}, "", "", "http://down.example/a.gguf", 0, true};
  auto downgraded = fetch_model_url(down, "a.gguf", options);
  ASSERT_FALSE(downgraded.ok());
  EXPECT_TRUE(downgraded.error().is(ErrorCode::InvalidArgument)) << downgraded.error().message;
}

TEST_F(ModelDownloadTest, HttpErrorsHaveCodesAndNameTheStatus) {
  auto missing = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.error().is(ErrorCode::NotFound));
  EXPECT_NE(missing.error().message.find("HTTP 404"), std::string::npos) << missing.error().message;

  http.resources[kUrl].status = 403;
  auto denied = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(denied.ok());
  EXPECT_TRUE(denied.error().is(ErrorCode::PermissionDenied)) << denied.error().message;

  http.resources[kUrl].status = 503;
  options.attempts = 3;
  http.requests.clear();
  auto busy = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(busy.ok());
  EXPECT_TRUE(busy.error().is(ErrorCode::Unavailable));
  EXPECT_EQ(http.requests.size(), 3u);  // retried
}

TEST_F(ModelDownloadTest, ABodyThatIsNoGgufIsRefusedEarly) {
  std::vector<uint8_t> page(2 << 20, 'x');
  std::copy_n("<html>", 6, page.begin());
  http.resources[kUrl] = {page, "\"p\"", "", "", 0, true};
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.error().is(ErrorCode::InvalidArgument)) << got.error().message;
  EXPECT_LE(http.requests[0].body_bytes, 64u << 10);  // stopped at the first piece
  EXPECT_EQ(count_files(options.store_dir + "/models"), 0u);
}

// Writes fail with a full disk once `budget` bytes were written to files under "downloads".
class FullDiskEnv : public Env {
 public:
  explicit FullDiskEnv(uint64_t budget) : budget_(budget) {}
  uint64_t budget_;
  class Limited : public File {
   public:
    Limited(std::unique_ptr<File> f, uint64_t* budget) : f_(std::move(f)), budget_(budget) {}
    Result<void> write_at(uint64_t off, std::span<const uint8_t> b) override {
      if (b.size() > *budget_) return Error{ErrorCode::ResourceExhausted, "the disk is full"};
      *budget_ -= b.size();
      return f_->write_at(off, b);
    }
    Result<size_t> read_at(uint64_t off, std::span<uint8_t> out) override { return f_->read_at(off, out); }
    Result<void> sync() override { return f_->sync(); }
    Result<void> sync_data() override { return f_->sync_data(); }
    Result<void> allocate(uint64_t size) override { return f_->allocate(size); }
    Result<void> make_read_only() override { return f_->make_read_only(); }

   private:
    std::unique_ptr<File> f_;
    uint64_t* budget_;
  };
  Result<std::unique_ptr<File>> open(const std::string& p, Open how) override {
    auto f = base().open(p, how);
    if (!f || p.find("/downloads/") == std::string::npos || !p.ends_with(".part")) return f;
    return std::unique_ptr<File>(new Limited(std::move(*f), &budget_));
  }
  Result<void> make_dir(const std::string& p) override { return base().make_dir(p); }
  Result<std::vector<std::string>> list_dir(const std::string& p) override { return base().list_dir(p); }
  Result<FileInfo> stat(const std::string& p) override { return base().stat(p); }
  Result<void> rename(const std::string& a, const std::string& b) override { return base().rename(a, b); }
  Result<void> remove(const std::string& p) override { return base().remove(p); }
  Result<void> sync_dir(const std::string& p) override { return base().sync_dir(p); }
  Result<void> touch(const std::string& p) override { return base().touch(p); }
  Result<std::unique_ptr<File>> lock(const std::string& p) override { return base().lock(p); }

 private:
  static Env& base() { return Env::Default(); }
};

TEST_F(ModelDownloadTest, AFullDiskIsResourceExhaustedAndTheBytesSoFarAreResumed) {
  const auto body = gguf_bytes(2 << 20, 16);
  serve(body);
  FullDiskEnv full(1 << 20);
  options.env = &full;
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.error().is(ErrorCode::ResourceExhausted)) << got.error().message;
  options.env = nullptr;
  http.requests.clear();
  auto resumed = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_EQ(http.requests[0].headers.at("Range"), "bytes=" + std::to_string(1 << 20) + "-");
  EXPECT_EQ(read_all(resumed->path), body);
}

TEST_F(ModelDownloadTest, KnownContentUnderAPinnedHashNeedsNoNetwork) {
  const auto body = gguf_bytes(1 << 20, 17);
  serve(body);
  ASSERT_TRUE(fetch_model_url(kUrl, "tiny.gguf", options).ok());
  http.refuse_all = true;
  options.sha256 = sha256(body);
  auto other = fetch_model_url("https://mirror.example/x/tiny.gguf", "tiny.gguf", options);
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_TRUE(other->from_cache);
  EXPECT_EQ(read_all(other->path), body);
}

TEST_F(ModelDownloadTest, ACompletePartialFileLeftByACrashIsFinishedWithoutItsBytesAgain) {
  // As a process that died after the last byte but before the import leaves it (model_download.h).
  const auto body = gguf_bytes(1 << 20, 18);
  serve(body);
  const std::string key = hex_encode(sha256(std::span(reinterpret_cast<const uint8_t*>(kUrl), std::strlen(kUrl)))).substr(0, 32);
  std::filesystem::create_directories(options.store_dir + "/downloads");
  std::ofstream(options.store_dir + "/downloads/" + key + ".part", std::ios::binary)
      .write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
  std::ofstream(options.store_dir + "/downloads/" + key + ".json")
      << R"({"url":")" << kUrl << R"(","validator":"\"v1\"","total":)" << body.size() << R"(,"durable":)"
      << body.size() << R"(,"sha256":"","sha256_from":""})";
  auto got = fetch_model_url(kUrl, "tiny.gguf", options);
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(http.requests.size(), 1u);
  EXPECT_EQ(http.requests[0].headers.at("Range"), "bytes=" + std::to_string(body.size()) + "-");
  EXPECT_EQ(got->fetched_bytes, 0u);
  EXPECT_EQ(read_all(got->path), body);
}

TEST(Sha256Hex, ParsesBothCasesAndRejectsTheRest) {
  const std::string hex(64, 'a');
  ASSERT_TRUE(parse_sha256_hex(hex).ok());
  EXPECT_EQ(*parse_sha256_hex(std::string(64, 'A')), *parse_sha256_hex(hex));
  EXPECT_FALSE(parse_sha256_hex(std::string(63, 'a')).ok());
  EXPECT_FALSE(parse_sha256_hex(std::string(64, 'g')).ok());
}

}  // namespace
}  // namespace omni::store
