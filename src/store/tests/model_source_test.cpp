#include "store/model_source.h"

#include <gtest/gtest.h>

#include <fstream>

#include "fake_http.h"
#include "test_util.h"

namespace omni::store {
namespace {

TEST(HuggingFaceUrl, ExpandsToTheResolveUrl) {
  EXPECT_EQ(*hugging_face_url("TheOrg/the-repo_1.5/model.Q4_K_M.gguf"),
            "https://huggingface.co/TheOrg/the-repo_1.5/resolve/main/model.Q4_K_M.gguf");
  EXPECT_EQ(*hugging_face_url("org/repo/sub/dir/m.gguf@v1.0"), "https://huggingface.co/org/repo/resolve/v1.0/sub/dir/m.gguf");
  // A branch with a slash and a file name with a space are escaped, as the Hub's own links do.
  EXPECT_EQ(*hugging_face_url("org/repo/my model.gguf@refs/pr/3"),
            "https://huggingface.co/org/repo/resolve/refs%2Fpr%2F3/my%20model.gguf");
}

TEST(HuggingFaceUrl, AMirrorEndpointReplacesTheHub) {
  EXPECT_EQ(*hugging_face_url("org/repo/m.gguf", "http://127.0.0.1:8000/"), "http://127.0.0.1:8000/org/repo/resolve/main/m.gguf");
}

TEST(HuggingFaceUrl, RefusesMalformedNames) {
  for (const char* bad : {"org/repo", "org//m.gguf", "org/repo/../m.gguf", "org/repo/m.gguf@", "o rg/repo/m.gguf",
                          "org/re%po/m.gguf", ""}) {
    auto r = hugging_face_url(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument)) << bad;
  }
}

TEST(ModelSource, ClassifiesFilesCidsUrlsAndHfNames) {
  testing::ScratchDir dir;
  const std::string file = dir / "hf:org";  // an existing file wins over what its name looks like
  std::ofstream(file) << "x";
  auto f = parse_model_source(file);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->kind, ModelSource::Kind::File);

  auto missing = parse_model_source(dir / "nope.gguf");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->kind, ModelSource::Kind::File);

  const std::string cid = Cid::of(std::vector<uint8_t>{1, 2, 3}).to_string();
  auto c = parse_model_source(cid);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, ModelSource::Kind::Cid);
  EXPECT_EQ(c->cid->to_string(), cid);

  auto u = parse_model_source("HTTP://127.0.0.1:8000/a/b%20c.gguf?download=1");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->kind, ModelSource::Kind::Url);
  EXPECT_EQ(u->file_name, "b c.gguf");

  auto h = parse_model_source("hf:org/repo/m.gguf@abc");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->kind, ModelSource::Kind::Url);
  EXPECT_EQ(h->url, "https://huggingface.co/org/repo/resolve/abc/m.gguf");
  EXPECT_EQ(h->file_name, "m.gguf");

  for (const char* bad : {"https://host/", "https://", "http:///x.gguf", "https://h/a/..", "https://h/a%2Fb"}) {
    auto r = parse_model_source(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(r.error().is(ErrorCode::InvalidArgument)) << bad;
  }
}

TEST(ModelSource, ResolvesAUrlToItsCopyInTheStoreAndLeavesTheRest) {
  testing::ScratchDir dir;
  testing::FakeHttp http;
  std::vector<uint8_t> body(100000, 7);
  std::copy_n("GGUF", 4, body.begin());
  http.resources["http://127.0.0.1:9/m.gguf"] = {body, "\"e\"", "", "", 0, true};
  ModelFetchOptions o;
  o.store_dir = dir / "store";
  o.http = &http;
  auto r = resolve_model_source("http://127.0.0.1:9/m.gguf", o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->downloaded);
  EXPECT_TRUE(r->model.starts_with(o.store_dir + "/models/"));
  EXPECT_TRUE(r->model.ends_with("/m.gguf"));
  auto again = resolve_model_source("http://127.0.0.1:9/m.gguf", o);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->downloaded);
  EXPECT_EQ(again->model, r->model);

  auto plain = resolve_model_source("some/file.gguf", o);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->model, "some/file.gguf");
  EXPECT_EQ(http.requests.size(), 1u);
}

TEST(ModelSource, HfTokenGoesToTheHubOnlyNotWhereItRedirects) {
  testing::ScratchDir dir;
  testing::FakeHttp http;
  std::vector<uint8_t> body(100000, 7);
  std::copy_n("GGUF", 4, body.begin());
  const std::string hub = "http://hub.test:8000/org/repo/resolve/main/m.gguf", cdn = "http://cdn.test/x";
  http.resources[hub] = {{}, "", "", cdn, 0, true};
  http.resources[cdn] = {body, "\"e\"", "", "", 0, true};
  ModelFetchOptions o;
  o.store_dir = dir / "store";
  o.http = &http;
  ::setenv("HF_ENDPOINT", "http://hub.test:8000", 1);
  ::setenv("HF_TOKEN", "secret", 1);
  auto r = resolve_model_source("hf:org/repo/m.gguf", o);
  ::unsetenv("HF_TOKEN");
  ::unsetenv("HF_ENDPOINT");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(http.requests.size(), 2u);
  EXPECT_EQ(http.requests[0].headers["Authorization"], "Bearer secret");
  EXPECT_EQ(http.requests[1].headers.count("Authorization"), 0u);
  // A URL given as such gets no token.
  http.requests.clear();
  ::setenv("HF_TOKEN", "secret", 1);
  http.resources["http://hub.test:8000/plain/m.gguf"] = {body, "\"e\"", "", "", 0, true};
  auto plain = resolve_model_source("http://hub.test:8000/plain/m.gguf", o);
  ::unsetenv("HF_TOKEN");
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  ASSERT_FALSE(http.requests.empty());
  EXPECT_EQ(http.requests[0].headers.count("Authorization"), 0u);
}

}  // namespace
}  // namespace omni::store
