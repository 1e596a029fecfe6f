// The proxy over real loopback sockets. Timing checks have a strict lower bound (the emulator must
// never deliver early) and a generous upper bound (a shared 2-core machine may run us late).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <mutex>

#include "test_net.h"

namespace omni::linkemu {
namespace {

using namespace testing;
constexpr Nanos kMs = 1'000'000;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Late is tolerated up to max(slack_ms, 25 %): the process may be descheduled; early never is.
void expect_latency(const std::vector<double>& samples_ms, double expected_ms, double slack_ms, const char* what) {
  const double lowest = *std::min_element(samples_ms.begin(), samples_ms.end());
  const double mid = median(samples_ms);
  std::printf("  %s: expected %.1f ms, min %.2f ms, median %.2f ms\n", what, expected_ms, lowest, mid);
  EXPECT_GE(lowest, expected_ms - 0.2) << what << ": delivered early";
  EXPECT_LE(mid, expected_ms + std::max(slack_ms, 0.25 * expected_ms)) << what << ": median too late";
}

TEST(Proxy, OneWayDelayInEachDirection) {
  // The server notes when each ping arrives and when it answers: same clock as the client, so each
  // direction's delay is measured on its own.
  std::mutex mutex;
  std::vector<double> server_recv, server_send;
  Server server([&](int fd) {
    char ping[8];
    while (recv_all(fd, ping, sizeof ping)) {
      const double t = now_ms();
      {
        std::lock_guard lock(mutex);
        server_recv.push_back(t);
        server_send.push_back(now_ms());
      }
      if (!send_all(fd, ping, sizeof ping)) return;
    }
  });
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 10 * kMs}, {.delay_ns = 25 * kMs}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  std::vector<double> client_send, client_recv;
  for (int i = 0; i < 8; ++i) {
    char ping[8] = {static_cast<char>(i)};
    client_send.push_back(now_ms());
    ASSERT_TRUE(send_all(fd, ping, sizeof ping));
    ASSERT_TRUE(recv_all(fd, ping, sizeof ping));
    client_recv.push_back(now_ms());
    EXPECT_EQ(ping[0], static_cast<char>(i));
  }
  close(fd);
  std::lock_guard lock(mutex);
  ASSERT_EQ(server_recv.size(), 8u);
  std::vector<double> up, down, round_trip;
  for (int i = 0; i < 8; ++i) {
    up.push_back(server_recv[i] - client_send[i]);
    down.push_back(client_recv[i] - server_send[i]);
    round_trip.push_back(client_recv[i] - client_send[i]);
  }
  expect_latency(up, 10, 3, "up");
  expect_latency(down, 25, 3, "down");
  expect_latency(round_trip, 35, 5, "round trip");
}

TEST(Proxy, PingPongRoundTripIsTwiceTheDelay) {
  Server server(echo);
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 20 * kMs}, {.delay_ns = 20 * kMs}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  std::vector<double> rtt;
  for (int i = 0; i < 10; ++i) {
    char ping[64] = {static_cast<char>(i)};
    const double t0 = now_ms();
    ASSERT_TRUE(send_all(fd, ping, sizeof ping));
    ASSERT_TRUE(recv_all(fd, ping, sizeof ping));
    rtt.push_back(now_ms() - t0);
  }
  close(fd);
  expect_latency(rtt, 40, 5, "round trip");
}

// Rate seen by a receiver: bytes after its first read, over the time from that read to the last.
struct RateMeter {
  std::size_t total = 0;
  std::size_t first_bytes = 0;
  double first_ms = 0;
  double last_ms = 0;
  void add(std::size_t n) {
    const double t = now_ms();
    if (total == 0) {
      first_bytes = n;
      first_ms = t;
    }
    total += n;
    last_ms = t;
  }
  double mbit_per_s() const { return static_cast<double>(total - first_bytes) * 8 / ((last_ms - first_ms) * 1e3); }
};

TEST(Proxy, BulkThroughputMatchesTheRateInEachDirection) {
  constexpr std::size_t kUpBytes = 3'000'000;    // 0.6 s at 40 Mbit/s
  constexpr std::size_t kDownBytes = 3'000'000;  // 0.3 s at 80 Mbit/s
  RateMeter at_server;
  Server server([&](int fd) {
    char chunk[65536];
    ssize_t n;
    while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0) at_server.add(static_cast<std::size_t>(n));
    const auto data = random_bytes(kDownBytes, 3);
    send_all(fd, data.data(), data.size());
  });
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 5 * kMs, .rate_bits_per_s = 40e6},
                                  {.delay_ns = 5 * kMs, .rate_bits_per_s = 80e6}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  const auto data = random_bytes(kUpBytes, 2);
  ASSERT_TRUE(send_all(fd, data.data(), data.size()));
  shutdown(fd, SHUT_WR);  // the server answers after our EOF
  RateMeter at_client;
  char chunk[65536];
  ssize_t n;
  while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0) at_client.add(static_cast<std::size_t>(n));
  close(fd);
  std::printf("  up %.2f Mbit/s (40), down %.2f Mbit/s (80)\n", at_server.mbit_per_s(), at_client.mbit_per_s());
  ASSERT_EQ(at_server.total, kUpBytes);
  ASSERT_EQ(at_client.total, kDownBytes);
  // Never faster than the rate (2 % for timer granularity); up to 15 % slower for a noisy machine.
  EXPECT_LE(at_server.mbit_per_s(), 40 * 1.02);
  EXPECT_GE(at_server.mbit_per_s(), 40 * 0.85);
  EXPECT_LE(at_client.mbit_per_s(), 80 * 1.02);
  EXPECT_GE(at_client.mbit_per_s(), 80 * 0.85);
}

// Sends `data` through an echo server behind the proxy from one thread while reading it back on
// another; returns what came back before EOF.
std::vector<char> echo_through(std::uint16_t port, const std::vector<char>& data) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  std::thread writer([&] {
    // Odd-sized writes, so segment boundaries fall everywhere.
    for (std::size_t at = 0; at < data.size();) {
      const std::size_t n = std::min<std::size_t>(data.size() - at, 1000 + at % 7777);
      if (!send_all(fd, data.data() + at, n)) break;
      at += n;
    }
    shutdown(fd, SHUT_WR);
  });
  auto back = recv_until_eof(fd);
  writer.join();
  close(fd);
  return back;
}

TEST(Proxy, BytesArriveIntactAndInOrderUnderJitter) {
  Server server(echo);
  const auto data = random_bytes(4 << 20, 4);
  {
    RunningProxy proxy(local_config(server.port(), {.delay_ns = 2 * kMs, .jitter_ns = 2 * kMs},
                                    {.delay_ns = 3 * kMs, .jitter_ns = 3 * kMs}));
    const auto back = echo_through(proxy.port(), data);
    ASSERT_EQ(back.size(), data.size());
    EXPECT_TRUE(back == data) << "unlimited rate: bytes reordered or corrupted";
  }
  {
    ProxyConfig config = local_config(server.port(), {.delay_ns = 4 * kMs, .jitter_ns = 4 * kMs, .rate_bits_per_s = 200e6},
                                      {.delay_ns = 4 * kMs, .jitter_ns = 4 * kMs, .rate_bits_per_s = 200e6});
    config.seed = 99;
    RunningProxy proxy(config);
    const auto back = echo_through(proxy.port(), data);
    ASSERT_EQ(back.size(), data.size());
    EXPECT_TRUE(back == data) << "rate-limited: bytes reordered or corrupted";
  }
}

TEST(Proxy, ClientHalfCloseReachesTheServerAfterTheDelay) {
  std::mutex mutex;
  double server_eof_ms = 0;
  std::string server_got;
  Server server([&](int fd) {
    const auto got = recv_until_eof(fd);
    {
      std::lock_guard lock(mutex);
      server_eof_ms = now_ms();
      server_got.assign(got.begin(), got.end());
    }
    send_all(fd, "bye", 3);  // still allowed: only the client's direction is closed
  });
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 15 * kMs}, {.delay_ns = 15 * kMs}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "hello", 5));
  const double closed_ms = now_ms();
  shutdown(fd, SHUT_WR);
  const auto reply = recv_until_eof(fd);
  const double reply_eof_ms = now_ms();
  close(fd);
  EXPECT_EQ(std::string(reply.begin(), reply.end()), "bye");
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(server_got, "hello");
    EXPECT_GE(server_eof_ms - closed_ms, 15 - 0.2);
  }
  EXPECT_GE(reply_eof_ms - closed_ms, 30 - 0.2);
  EXPECT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == 0; }, 2000));
}

TEST(Proxy, ServerCloseReachesTheClient) {
  Server server([](int fd) { send_all(fd, "greeting", 8); });  // then the handler closes
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 5 * kMs}, {.delay_ns = 5 * kMs}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  const auto got = recv_until_eof(fd);
  EXPECT_EQ(std::string(got.begin(), got.end()), "greeting");
  EXPECT_EQ(proxy.proxy().open_connections(), 1u);  // half-open: the client may still send
  close(fd);
  EXPECT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == 0; }, 2000));
}

TEST(Proxy, ResetPropagatesAsReset) {
  std::mutex mutex;
  int server_error = 0;
  Server server([&](int fd) {
    int error = 0;
    recv_until_eof(fd, &error);
    std::lock_guard lock(mutex);
    server_error = error;
  });
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 1 * kMs}, {.delay_ns = 1 * kMs}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "x", 1));
  ASSERT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == 1; }, 2000));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  close(fd);
  EXPECT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == 0; }, 2000));
  EXPECT_TRUE(wait_until([&] { std::lock_guard lock(mutex); return server_error == ECONNRESET; }, 2000))
      << "server saw " << std::strerror(server_error);
}

TEST(Proxy, UnreachableTargetClosesTheClient) {
  // A port that was free a moment ago: nothing listens there.
  std::uint16_t dead_port = 0;
  {
    Server placeholder(echo);
    dead_port = placeholder.port();
  }
  RunningProxy proxy(local_config(dead_port, {}, {}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  timeval timeout{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char c;
  const ssize_t n = recv(fd, &c, 1, 0);
  const int err = errno;
  close(fd);
  EXPECT_TRUE(n == 0 || (n < 0 && err == ECONNRESET)) << "recv returned " << n << ": " << std::strerror(err);
  // The proxy closes the client's socket and then forgets the connection, so the count may lag the close.
  EXPECT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == 0; }, 2000));
}

TEST(Proxy, ManyConcurrentConnectionsShareTheLink) {
  constexpr int kConnections = 50;
  constexpr std::size_t kBytes = 16 * 1024;
  Server server(echo);
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 10 * kMs, .rate_bits_per_s = 100e6},
                                  {.delay_ns = 10 * kMs, .rate_bits_per_s = 100e6}));
  std::vector<int> fds;
  std::vector<std::vector<char>> sent;
  const double start = now_ms();
  for (int i = 0; i < kConnections; ++i) {
    fds.push_back(connect_to(proxy.port()));
    ASSERT_GE(fds.back(), 0);
    sent.push_back(random_bytes(kBytes, 100 + i));
  }
  for (int i = 0; i < kConnections; ++i) ASSERT_TRUE(send_all(fds[i], sent[i].data(), kBytes));
  EXPECT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == kConnections; }, 2000));
  for (int i = 0; i < kConnections; ++i) {
    std::vector<char> back(kBytes);
    ASSERT_TRUE(recv_all(fds[i], back.data(), kBytes)) << i;
    EXPECT_TRUE(back == sent[i]) << "connection " << i;
  }
  const double elapsed = now_ms() - start;
  for (int fd : fds) close(fd);
  // All 800 KiB share the uplink: 65 ms of serialization plus the round trip, at least.
  const double serialization_ms = kConnections * kBytes * 8 / 100e6 * 1e3;
  std::printf("  %d connections: %.1f ms (at least %.1f)\n", kConnections, elapsed, serialization_ms + 20);
  EXPECT_GE(elapsed, serialization_ms + 20 - 1);
  EXPECT_LE(elapsed, 3000);
  EXPECT_TRUE(wait_until([&] { return proxy.proxy().open_connections() == 0; }, 3000));
}

// Sends from a non-blocking socket until it stays full for `patience_ms`, `cap` bytes went out or
// `deadline_ms` passed.
std::size_t send_until_blocked(int fd, double patience_ms, std::size_t cap, double deadline_ms) {
  const double give_up = now_ms() + deadline_ms;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  const auto chunk = random_bytes(1 << 20, 5);
  std::size_t sent = 0;
  double blocked_since = 0;
  while (sent < cap && now_ms() < give_up) {
    const ssize_t n = send(fd, chunk.data(), std::min(chunk.size(), cap - sent), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      blocked_since = 0;
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) break;
    if (blocked_since == 0) blocked_since = now_ms();
    if (now_ms() - blocked_since > patience_ms) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return sent;
}

TEST(Proxy, StalledReceiverBlocksTheSender) {
  // The server reads nothing until told to: once the proxy's queue is full it must stop reading
  // from the client (which then blocks) instead of buffering everything it is sent.
  std::atomic<bool> drain{false};
  std::atomic<std::size_t> received{0};
  Server server([&](int fd) {
    while (!drain) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    received = recv_until_eof(fd).size();
  });
  ProxyConfig config = local_config(server.port(), {.delay_ns = 1 * kMs}, {});
  config.queue_limit_bytes = 256 * 1024;
  RunningProxy proxy(config);
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  constexpr std::size_t kCap = 256u << 20;  // far more than all the kernel's socket buffers
  const std::size_t sent = send_until_blocked(fd, 300, kCap, 10'000);
  EXPECT_LT(sent, kCap) << "the sender was never blocked";
  EXPECT_LE(proxy.proxy().peak_queued_bytes(), config.queue_limit_bytes + 64 * 1024);
  // Everything accepted still arrives once the receiver reads.
  drain = true;
  shutdown(fd, SHUT_WR);
  EXPECT_TRUE(wait_until([&] { return received.load() > 0; }, 10'000));
  EXPECT_EQ(received.load(), sent);
  close(fd);
}

TEST(Proxy, SlowLinkQueuesUpToTheLimit) {
  // A sender faster than the link fills the queue to its limit and no further.
  std::atomic<std::size_t> received{0};
  Server server([&](int fd) {
    char chunk[65536];
    ssize_t n;
    while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0) received += static_cast<std::size_t>(n);
  });
  ProxyConfig config = local_config(server.port(), {.delay_ns = 1 * kMs, .rate_bits_per_s = 8e6}, {});
  config.queue_limit_bytes = 128 * 1024;
  RunningProxy proxy(config);
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  const double start = now_ms();
  send_until_blocked(fd, 400, 64u << 20, 500);
  const double elapsed_s = (now_ms() - start) / 1e3;
  EXPECT_GE(proxy.proxy().peak_queued_bytes(), config.queue_limit_bytes);
  EXPECT_LE(proxy.proxy().peak_queued_bytes(), config.queue_limit_bytes + 64 * 1024);
  // And the link still ran at its rate meanwhile (1 MB/s; loosely: the point here is the queue).
  EXPECT_LE(static_cast<double>(received.load()), 1.05e6 * elapsed_s + 64 * 1024);
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  close(fd);  // reset: no need to wait for the queued megabytes
}

TEST(Proxy, ShapingCanBeSwitchedOnLater) {
  Server server(echo);
  ProxyConfig config = local_config(server.port(), {.delay_ns = 20 * kMs, .rate_bits_per_s = 8e6},
                                    {.delay_ns = 20 * kMs, .rate_bits_per_s = 8e6});
  config.start_shaped = false;
  RunningProxy proxy(config);
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  // Unshaped: 2 MB echoed in far less than the 2 s the link would need each way.
  const auto bulk = random_bytes(2'000'000, 6);
  double t0 = now_ms();
  std::thread writer([&] { send_all(fd, bulk.data(), bulk.size()); });
  std::vector<char> back(bulk.size());
  ASSERT_TRUE(recv_all(fd, back.data(), back.size()));
  writer.join();
  const double unshaped_ms = now_ms() - t0;
  EXPECT_TRUE(back == bulk);
  EXPECT_LT(unshaped_ms, 1000);
  proxy.proxy().set_shaping(true);
  char ping[8] = {};
  t0 = now_ms();
  ASSERT_TRUE(send_all(fd, ping, sizeof ping));
  ASSERT_TRUE(recv_all(fd, ping, sizeof ping));
  const double rtt = now_ms() - t0;
  close(fd);
  std::printf("  2 MB unshaped echo %.1f ms, then a shaped round trip %.1f ms\n", unshaped_ms, rtt);
  EXPECT_GE(rtt, 40 - 0.2);
  EXPECT_LE(rtt, 40 + 20);
}

TEST(Proxy, WaitingForADelayUsesNoCpu) {
  Server server(echo);
  RunningProxy proxy(local_config(server.port(), {.delay_ns = 300 * kMs}, {.delay_ns = 300 * kMs}));
  const int fd = connect_to(proxy.port());
  ASSERT_GE(fd, 0);
  timespec cpu0{}, cpu1{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
  char ping[16] = {};
  ASSERT_TRUE(send_all(fd, ping, sizeof ping));
  ASSERT_TRUE(recv_all(fd, ping, sizeof ping));
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
  close(fd);
  const double cpu_ms = (cpu1.tv_sec - cpu0.tv_sec) * 1e3 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1e6;
 std::printf("  CPU %.2f ms during a 600 ms round trip\n", cpu_ms);
  EXPECT_LT(cpu_ms, 60) << "a 600 ms round trip should leave every thread asleep";
}

}  // namespace
}  // namespace omni::linkemu
