// The reachability check over loopback: a port that listens is found open and our own probe
// arrives on it; a closed port is "refused"; the bootstrap connects back to the asker's address
// only (the request cannot name another), refuses privileged ports and garbage with "bad", more
// checks than the rate allows with "rate", and more connections at once than it serves with
// "busy"; the request and reply lines round-trip and refuse malformed text by code.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "net/reachability.h"

namespace omni::net {
namespace {

// A TCP port on 127.0.0.1 that nothing listens on now (bound, then closed).
uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Sends `request` raw to the server and returns its one reply line (without the newline).
std::string exchange(uint16_t server_port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(server_port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  if (!request.empty()) (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string line;
  char c;
  while (::recv(fd, &c, 1, 0) == 1 && c != '\n') line += c;
  ::close(fd);
  return line;
}

std::unique_ptr<ReachabilityServer> server(ReachabilityServerOptions options = {}) {
  auto s = ReachabilityServer::start(HostPort{"127.0.0.1", 0}, options);
  EXPECT_TRUE(s) << s.error().message;
  return s ? std::move(*s) : nullptr;
}

const HostPort at(uint16_t port) { return HostPort{"127.0.0.1", port}; }

TEST(Reachability, ListeningPortIsOpenAndTheProbeArrives) {
  auto s = server();
  ASSERT_TRUE(s);
  const uint16_t port = closed_port();
  auto r = check_reachability(at(s->port()), port);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->verdict, ReachVerdict::Open);
  EXPECT_TRUE(r->listened);
  EXPECT_TRUE(r->probe_received);
  EXPECT_TRUE(r->reachable());
  EXPECT_EQ(r->seen_address, "127.0.0.1");
}

TEST(Reachability, ClosedPortIsRefused) {
  auto s = server();
  ASSERT_TRUE(s);
  ReachabilityCheckOptions o;
  o.listen = false;
  auto r = check_reachability(at(s->port()), closed_port(), o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->verdict, ReachVerdict::Refused);
  EXPECT_FALSE(r->listened);
  EXPECT_FALSE(r->reachable());
}

TEST(Reachability, PortTakenByAnotherListenerCountsAsOpenWithoutProbe) {
  // A node already listening there: the check cannot listen itself; the bootstrap's verdict stands.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto s = server();
  ASSERT_TRUE(s);
  auto r = check_reachability(at(s->port()), ntohs(a.sin_port));
  ::close(fd);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->verdict, ReachVerdict::Open);
  EXPECT_FALSE(r->listened);
  EXPECT_TRUE(r->reachable());
}

TEST(Reachability, NoBootstrapIsAnErrorNotAVerdict) {
  auto r = check_reachability(at(closed_port()), 7000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable);
}

TEST(Reachability, RateLimitPerAddress) {
  ReachabilityServerOptions o;
  o.checks_per_minute = 2;
  auto s = server(o);
  ASSERT_TRUE(s);
  ReachabilityCheckOptions c;
  c.listen = false;
  const uint16_t port = closed_port();
  ASSERT_TRUE(check_reachability(at(s->port()), port, c));
  ASSERT_TRUE(check_reachability(at(s->port()), port, c));
  auto third = check_reachability(at(s->port()), port, c);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ErrorCode::ResourceExhausted);
}

TEST(Reachability, BusyBeyondConcurrentChecks) {
  ReachabilityServerOptions o;
  o.max_concurrent = 1;
  o.request_timeout_ms = 3000;
  auto s = server(o);
  ASSERT_TRUE(s);
  // A silent connection holds the one slot until request_timeout_ms.
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(s->port());
  ASSERT_EQ(::connect(silent, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // accepted and counted
  ReachabilityCheckOptions c;
  c.listen = false;
  auto r = check_reachability(at(s->port()), closed_port(), c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted);
  EXPECT_NE(r.error().message.find("at once"), std::string::npos) << r.error().message;
  ::close(silent);
}

TEST(Reachability, BadRequestsAreRefused) {
  auto s = server();
  ASSERT_TRUE(s);
  const std::string nonce(32, 'a');
  EXPECT_EQ(exchange(s->port(), "GET / HTTP/1.1\r\n\r\n").rfind("ERR bad ", 0), 0u);
  // Privileged ports are never probed.
  EXPECT_EQ(exchange(s->port(), "OMNI-REACH/1 CHECK 22 " + nonce + "\n").rfind("ERR bad ", 0), 0u);
  // No target address can be named: a fifth word is a malformed request.
  EXPECT_EQ(exchange(s->port(), "OMNI-REACH/1 CHECK 7000 " + nonce + " 10.0.0.1\n").rfind("ERR bad ", 0), 0u);
  EXPECT_EQ(exchange(s->port(), std::string(500, 'x')).rfind("ERR bad ", 0), 0u);
  EXPECT_EQ(exchange(s->port(), "OMNI-REACH/1 CHECK 7000 XYZ\n").rfind("ERR bad ", 0), 0u);
}

TEST(Reachability, SilentAskerIsDroppedAfterTheRequestTimeout) {
  ReachabilityServerOptions o;
  o.request_timeout_ms = 300;
  auto s = server(o);
  ASSERT_TRUE(s);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(exchange(s->port(), ""), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

TEST(ReachabilityLines, RoundTripAndRefusals) {
  ReachRequest q{7000, {}};
  for (size_t i = 0; i < q.nonce.size(); ++i) q.nonce[i] = static_cast<uint8_t>(i * 17);
  std::string line = format_reach_request(q);
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  auto p = parse_reach_request(line);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->port, 7000);
  EXPECT_EQ(p->nonce, q.nonce);
  EXPECT_EQ(parse_reach_request("OMNI-REACH/1 CHECK 70000 " + std::string(32, '0')).error().code,
            ErrorCode::InvalidArgument);
  EXPECT_EQ(parse_reach_request("OMNI-REACH/2 CHECK 7000 " + std::string(32, '0')).error().code,
            ErrorCode::InvalidArgument);

  for (ReachVerdict v : {ReachVerdict::Open, ReachVerdict::Refused, ReachVerdict::TimedOut, ReachVerdict::Unreachable}) {
    std::string r = format_reach_result({v, "203.0.113.7"});
    r.pop_back();
    auto back = parse_reach_reply(r);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->verdict, v);
    EXPECT_EQ(back->address, "203.0.113.7");
  }
  std::string e = format_reach_error("rate", "slow down");
  e.pop_back();
  EXPECT_EQ(parse_reach_reply(e).error().code, ErrorCode::ResourceExhausted);
  EXPECT_EQ(parse_reach_reply("SSH-2.0-OpenSSH_9.2").error().code, ErrorCode::Corruption);
  EXPECT_EQ(parse_reach_reply("RESULT maybe 1.2.3.4").error().code, ErrorCode::Corruption);
}

}  // namespace
}  // namespace omni::net
