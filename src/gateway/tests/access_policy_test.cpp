#include "gateway/access_policy.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace omni::gateway {
namespace {

AccessPolicy policy(const AccessOptions& o, std::string_view listen = "127.0.0.1") {
  auto p = AccessPolicy::create(o, listen);
  EXPECT_TRUE(p) << p.error().message;
  return std::move(*p);
}

AccessRequest get(std::string_view path, std::optional<std::string_view> host = "127.0.0.1:8080") {
  AccessRequest r;
  r.method = "GET";
  r.path = path;
  r.host = host;
  return r;
}

std::optional<std::string> header(const AccessDecision& d, std::string_view name) {
  for (const auto& [n, v] : d.headers)
    if (n == name) return v;
  return std::nullopt;
}

std::string code_of(const AccessDecision& d) { return d.refusal && d.refusal->code ? *d.refusal->code : ""; }

TEST(AccessPolicy, ALoopbackGatewayServesOnlyLoopbackNamesByDefault) {
  const AccessPolicy p = policy({});
  for (std::string_view host : {"127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:8080", "127.0.0.1"})
    EXPECT_FALSE(p.decide(get("/v1/models", host)).refusal) << host;
  // A rebound name: the page's own host name reaches the loopback address.
  for (std::string_view host : {"attacker.example:8080", "attacker.example", "127.0.0.1.nip.io:8080", "", "a b"}) {
    const auto d = p.decide(get("/health", host));
    ASSERT_TRUE(d.refusal) << host;
    EXPECT_EQ(d.refusal->status, 403);
    EXPECT_EQ(code_of(d), "host_not_allowed");
  }
  EXPECT_FALSE(p.decide(get("/health", std::nullopt)).refusal);  // HTTP/1.0 without Host: no browser
  // The listen host itself is allowed too.
  const AccessPolicy other = policy({}, "127.0.0.2");
  EXPECT_FALSE(other.decide(get("/", "127.0.0.2:9000")).refusal);
}

TEST(AccessPolicy, APublicGatewayServesAnyHostUnlessConfigured) {
  EXPECT_FALSE(policy({}, "0.0.0.0").decide(get("/health", "gw.example.com")).refusal);
  EXPECT_TRUE(policy({}, "0.0.0.0").allowed_hosts().empty());
  AccessOptions o;
  o.allowed_hosts = {"gw.example.com", "10.0.0.5:8080"};
  const AccessPolicy p = policy(o, "0.0.0.0");
  EXPECT_FALSE(p.decide(get("/health", "GW.example.com:443")).refusal);
  EXPECT_FALSE(p.decide(get("/health", "10.0.0.5:8080")).refusal);
  EXPECT_TRUE(p.decide(get("/health", "10.0.0.5:8081")).refusal);
  EXPECT_TRUE(p.decide(get("/health", "localhost")).refusal);  // configured: the default is gone
  o.allowed_hosts = {"*"};
  EXPECT_FALSE(policy(o).decide(get("/health", "anything.example")).refusal);
}

TEST(AccessPolicy, ForeignOriginsAreRefusedWithoutCorsHeaders) {
  const AccessPolicy p = policy({});
  auto r = get("/v1/models");
  for (std::string_view origin : {"https://evil.example", "http://127.0.0.1:8081", "null", "http://127.0.0.1:8080/x"}) {
    r.origin = origin;
    const auto d = p.decide(r);
    ASSERT_TRUE(d.refusal) << origin;
    EXPECT_EQ(d.refusal->status, 403);
    EXPECT_EQ(code_of(d), "origin_not_allowed");
    EXPECT_FALSE(header(d, "Access-Control-Allow-Origin")) << origin;
  }
  // Its own pages (same scheme-less authority as Host) pass, and need no CORS headers.
  for (std::string_view origin : {"http://127.0.0.1:8080", "HTTP://127.0.0.1:8080", "https://127.0.0.1:8080"}) {
    r.origin = origin;
    const auto d = p.decide(r);
    EXPECT_FALSE(d.refusal) << origin;
    EXPECT_TRUE(d.headers.empty()) << origin;
  }
  // Default ports are the same origin.
  auto plain = get("/v1/models", "localhost");
  plain.origin = "http://localhost:80";
  EXPECT_FALSE(p.decide(plain).refusal);
}

TEST(AccessPolicy, AllowedOriginsGetCorsAnswersAndPreflights) {
  AccessOptions o;
  o.allowed_origins = {"https://app.example.com", "http://localhost:5173"};
  o.api_keys = {"sk-test"};
  const AccessPolicy p = policy(o);
  AccessRequest pre = get("/v1/chat/completions");
  pre.method = "OPTIONS";
  pre.origin = "https://APP.example.com:443";
  pre.preflight_method = "POST";
  const auto d = p.decide(pre);
  EXPECT_FALSE(d.refusal);  // a preflight carries no key
  EXPECT_TRUE(d.preflight);
  EXPECT_EQ(header(d, "Access-Control-Allow-Origin"), "https://APP.example.com:443");
  EXPECT_EQ(header(d, "Vary"), "Origin");
  EXPECT_EQ(header(d, "Access-Control-Allow-Methods"), "GET, POST, OPTIONS");
  EXPECT_NE(header(d, "Access-Control-Allow-Headers")->find("Authorization"), std::string::npos);
  // The request itself: CORS headers, and the key is still needed.
  AccessRequest post = get("/v1/chat/completions");
  post.method = "POST";
  post.origin = "http://localhost:5173";
  auto without_key = p.decide(post);
  EXPECT_EQ(without_key.refusal->status, 401);
  EXPECT_EQ(header(without_key, "Access-Control-Allow-Origin"), "http://localhost:5173");
  post.authorization = "Bearer sk-test";
  const auto with_key = p.decide(post);
  EXPECT_FALSE(with_key.refusal);
  EXPECT_FALSE(with_key.preflight);
  EXPECT_EQ(header(with_key, "Access-Control-Allow-Origin"), "http://localhost:5173");
  // A preflight from a foreign origin is refused like any request from it.
  pre.origin = "https://evil.example";
  EXPECT_EQ(p.decide(pre).refusal->status, 403);
  o.allowed_origins = {"*"};
  pre.origin = "https://anyone.example";
  EXPECT_TRUE(policy(o).decide(pre).preflight);
}

TEST(AccessPolicy, KeysGuardTheApiAndMetricsNotHealthOrTheUi) {
  AccessOptions o;
  o.api_keys = {"sk-one", "sk-two"};
  const AccessPolicy p = policy(o);
  EXPECT_TRUE(p.requires_key());
  for (std::string_view path : {"/v1/models", "/v1/chat/completions", "/v1/swarm", "/metrics", "/v1", "/api/chat",
                                "/api/generate", "/api/tags", "/api/show", "/api/version"}) {
    const auto d = p.decide(get(path));
    ASSERT_TRUE(d.refusal) << path;
    EXPECT_EQ(d.refusal->status, 401);
    EXPECT_EQ(code_of(d), "invalid_api_key");
    EXPECT_EQ(header(d, "WWW-Authenticate"), "Bearer");
  }
  for (std::string_view path : {"/health", "/", "/index.html", "/assets/app.js"}) EXPECT_FALSE(p.decide(get(path)).refusal);
  auto r = get("/v1/models");
  for (std::string_view good : {"Bearer sk-one", "bearer sk-two", "Bearer  sk-one "}) {
    r.authorization = good;
    EXPECT_FALSE(p.decide(r).refusal) << good;
  }
  for (std::string_view bad : {"Bearer sk-on", "Bearer sk-one1", "sk-one", "Basic sk-one", "Bearer ", "Bearer SK-ONE"}) {
    r.authorization = bad;
    const auto d = p.decide(r);
    ASSERT_TRUE(d.refusal) << bad;
    EXPECT_EQ(d.refusal->status, 401) << bad;
  }
  EXPECT_FALSE(policy({}).requires_key());
  EXPECT_FALSE(policy({}).decide(get("/v1/models")).refusal);
}

TEST(AccessPolicy, BadKeysHostsAndOriginsAreRefusedAtStart) {
  for (const AccessOptions& o : {AccessOptions{{""}, {}, {}}, AccessOptions{{"has space"}, {}, {}},
                                 AccessOptions{{"caf\xC3\xA9"}, {}, {}}, AccessOptions{{}, {"a/b"}, {}},
                                 AccessOptions{{}, {"::1"}, {}}, AccessOptions{{}, {}, {"app.example.com"}},
                                 AccessOptions{{}, {}, {"ftp://app.example.com"}},
                                 AccessOptions{{}, {}, {"https://app.example.com/path"}}}) {
    auto p = AccessPolicy::create(o, "127.0.0.1");
    ASSERT_FALSE(p);
    EXPECT_TRUE(p.error().is(ErrorCode::InvalidArgument)) << p.error().message;
  }
}

TEST(AccessPolicy, KeyFilesHoldOneKeyALine) {
  const auto dir = std::filesystem::temp_directory_path() / ("omni-keys-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  auto keys = read_api_key_file(write("good", "# operators\nsk-one\n\n  sk-two  \r\n"));
  ASSERT_TRUE(keys) << keys.error().message;
  EXPECT_EQ(*keys, (std::vector<std::string>{"sk-one", "sk-two"}));
  auto empty = read_api_key_file(write("empty", "# nothing\n\n"));
  ASSERT_FALSE(empty);
  EXPECT_TRUE(empty.error().is(ErrorCode::InvalidArgument));
  auto bad = read_api_key_file(write("bad", "sk-one\nsk two\n"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find(":2:"), std::string::npos) << bad.error().message;
  auto missing = read_api_key_file((dir / "missing").string());
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(ErrorCode::NotFound));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace omni::gateway
