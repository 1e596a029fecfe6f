// StallWatch against a real node in a child process: a long wait on a live node is not a stall;
// once the node is frozen (SIGSTOP) a remote pipeline's waiting call fails within the stall
// timeout instead of the call timeout, and only the sockets opened after the watch started to the
// watched node are cut.
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "net/pipeline.h"
#include "swarm/stall_watch.h"
#include "swarm/tests/child_node.h"

namespace omni::swarm {
namespace {

using test_support::ChildNode;
using test_support::kModel;

int tcp_connect(uint16_t port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(s);
    return -1;
  }
  return s;
}

// True while nobody shut the socket down: a peek finds nothing to read but no end of stream.
bool still_open(int s) {
  char c;
  return recv(s, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

TEST(StallWatch, LiveNodeIsNotStalledFrozenNodeFailsTheCallAtOnce) {
  ChildNode node;
  ASSERT_EQ(node.error(), "");
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  auto identity = net::Identity::generate();
  ASSERT_TRUE(identity.ok());

  // A listener of our own: a socket to it opened after the watch starts leads elsewhere.
  int other = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(other, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(listen(other, 4), 0);
  socklen_t len = sizeof any;
  getsockname(other, reinterpret_cast<sockaddr*>(&any), &len);

  const int before = tcp_connect(node.address().port);  // to the node, but before the watch
  ASSERT_GE(before, 0);
  StallOptions stall;
  stall.stall_ms = 600;
  // Written on the watch's thread, read here once the call has failed.
  std::atomic<int> stalls{0};
  std::mutex stalled_mutex;
  std::string stalled_node;
  auto watch = StallWatch::start({node.address()}, *identity, stall,
                                 [&](const net::PeerAddress& a, const std::string&) {
                                   std::lock_guard lock(stalled_mutex);
                                   stalled_node = a.to_string();
                                   ++stalls;
                                 });
  ASSERT_TRUE(watch.ok()) << watch.error().message;
  const int elsewhere = tcp_connect(ntohs(any.sin_port));
  ASSERT_GE(elsewhere, 0);

  net::RemoteOptions remote;
  remote.peers = {node.address()};
  remote.encoding = net::HiddenEncoding::F32;
  remote.call_timeout_s = 30;
  auto pipeline = net::make_remote_pipeline(**model, remote, 64, pool);
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  std::vector<float> logits;
  const int32_t prompt[3] = {1, 15043, 29892};
  (*watch)->begin_call();
  ASSERT_TRUE((*pipeline)->forward(prompt, logits).ok());
  // A call outstanding for several stall timeouts while the node lives: not a stall.
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * stall.stall_ms));
  (*watch)->end_call();
  EXPECT_FALSE((*watch)->stalled().has_value());

  node.signal(SIGSTOP);
  const int32_t next[1] = {450};
  const auto t0 = std::chrono::steady_clock::now();
  (*watch)->begin_call();
  auto r = (*pipeline)->forward(next, logits);
  (*watch)->end_call();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  node.signal(SIGCONT);
  EXPECT_FALSE(r.ok());
  EXPECT_GE(waited, 0.6);
  EXPECT_LT(waited, 5.0);  // not the 30 s call timeout
  auto reason = (*watch)->stalled();
  ASSERT_TRUE(reason.has_value());
  EXPECT_NE(reason->find(node.address().host_port()), std::string::npos) << *reason;
  // The callback ran before the connections were cut, so before the call failed.
  EXPECT_EQ(stalls.load(), 1);
  {
    std::lock_guard lock(stalled_mutex);
    EXPECT_EQ(stalled_node, node.address().to_string());
  }
  EXPECT_TRUE(still_open(before));
  EXPECT_TRUE(still_open(elsewhere));
  // The watch's thread may still be going through the process's sockets after the cut: it is
  // stopped (joined) before any of them is closed.
  watch->reset();
  close(before);
  close(elsewhere);
  close(other);
}

}  // namespace
}  // namespace omni::swarm
