#include "linkemu/options.h"

#include <gtest/gtest.h>

namespace omni::linkemu {
namespace {

TEST(Options, EndpointForms) {
  auto with_listen = [](const std::string& listen) {
    return parse_args({"--listen", listen, "--target", "127.0.0.1:9"});
  };
  auto v4 = with_listen("127.0.0.1:8080");
  ASSERT_TRUE(v4) << v4.error().message;
  EXPECT_EQ(v4->config.listen.host, "127.0.0.1");
  EXPECT_EQ(v4->config.listen.port, 8080);
  auto v6 = with_listen("[::1]:0");
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->config.listen.host, "::1");
  EXPECT_EQ(v6->config.listen.port, 0);
  auto name = with_listen("localhost:1");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->config.listen.host, "localhost");
  for (const char* bad : {"127.0.0.1", ":80", "host:", "host:65536", "host:-1", "host:8x", "::1:80", "[::1]80", "[::1"}) {
    auto r = with_listen(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("--listen"), std::string::npos) << r.error().message;
  }
}

TEST(Options, CommonAndPerDirectionSettings) {
  auto r = parse_args({"--up-delay-ms", "5", "--listen", "127.0.0.1:0", "--target=10.0.0.1:9",
                       "--delay-ms", "25", "--jitter-ms=1.5", "--rate-mbit", "20", "--down-rate-mbit", "100",
                       "--seed", "9", "--queue-bytes", "4096", "--verbose"});
  ASSERT_TRUE(r) << r.error().message;
  const ProxyConfig& c = r->config;
  EXPECT_FALSE(r->help);
  EXPECT_EQ(c.listen.host, "127.0.0.1");
  EXPECT_EQ(c.target.port, 9);
  EXPECT_EQ(c.up.delay_ns, 5'000'000);     // the per-direction flag wins even when given first
  EXPECT_EQ(c.down.delay_ns, 25'000'000);
  EXPECT_EQ(c.up.jitter_ns, 1'500'000);
  EXPECT_EQ(c.down.jitter_ns, 1'500'000);
  EXPECT_DOUBLE_EQ(c.up.rate_bits_per_s, 20e6);
  EXPECT_DOUBLE_EQ(c.down.rate_bits_per_s, 100e6);
  EXPECT_EQ(c.seed, 9u);
  EXPECT_EQ(c.queue_limit_bytes, 4096u);
  EXPECT_TRUE(c.verbose);
}

TEST(Options, DefaultsAreAPlainProxy) {
  auto r = parse_args({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->config.up.delay_ns, 0);
  EXPECT_EQ(r->config.down.rate_bits_per_s, 0);
  EXPECT_EQ(r->config.queue_limit_bytes, 0u);
  EXPECT_TRUE(r->config.start_shaped);
  auto later = parse_args({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--start-unshaped"});
  ASSERT_TRUE(later);
  EXPECT_FALSE(later->config.start_shaped);
}

TEST(Options, ErrorsNameTheProblem) {
  auto expect_error = [](std::vector<std::string> args, const std::string& needle) {
    auto r = parse_args(args);
    ASSERT_FALSE(r) << "accepted: " << needle;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << r.error().message;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error({"--target", "127.0.0.1:1"}, "--listen");
  expect_error({"--listen", "127.0.0.1:0"}, "--target");
  expect_error({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:0"}, "port 0");
  expect_error({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--delay-ms", "-3"}, "--delay-ms");
  expect_error({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--rate-mbit", "fast"}, "'fast'");
  expect_error({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--jitter-ms"}, "needs a value");
  expect_error({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--bogus"}, "unknown option '--bogus'");
  expect_error({"--listen", "nohost", "--target", "127.0.0.1:1"}, "--listen");
  expect_error({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:1", "--queue-bytes", "0"}, "--queue-bytes");
}

TEST(Options, Help) {
  auto r = parse_args({"--help"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->help);
  EXPECT_NE(usage().find("--up-rate-mbit"), std::string::npos);
}

}  // namespace
}  // namespace omni::linkemu
