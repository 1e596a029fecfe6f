// Test helper: an `omni node` (net::NodeServer) in a forked child process, so that a test can
// freeze it (SIGSTOP) or kill it like a real node. Fork before the test starts threads of its own.
#pragma once

#include <kj/async-io.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "net/node_server.h"
#include "net/peer_address.h"

namespace omni::swarm::test_support {

inline const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

// `omni node` in a forked child (so it can be frozen with SIGSTOP); killed when this goes.
class ChildNode {
 public:
  // Serves blocks [begin, end) of kModel with the identity in `data_dir` (a fresh one when empty).
  explicit ChildNode(uint32_t begin = 0, uint32_t end = 4, std::string data_dir = "") {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      serve(fds[1], begin, end, data_dir);
      _exit(1);
    }
    close(fds[1]);
    char buf[256];
    std::string line;
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) line.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    auto a = net::parse_peer_address(line);
    if (a) address_ = *a;
    error_ = a ? "" : "the node did not start: " + line;
  }
  ~ChildNode() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  const std::string& error() const { return error_; }
  const net::PeerAddress& address() const { return address_; }
  void signal(int sig) const { kill(pid_, sig); }

 private:
  // Writes "ID@HOST:PORT" (or an error) to `fd`, closes it, and serves until killed.
  static void serve(int fd, uint32_t begin, uint32_t end, const std::string& data_dir) {
    auto io = kj::setupAsyncIo();
    net::NodeOptions o;
    o.model_path = kModel;
    o.block_begin = begin;
    o.block_end = end;
    o.threads = 1;
    auto identity = data_dir.empty() ? net::Identity::generate() : net::Identity::load_or_create(data_dir);
    if (!identity) {
      (void)!write(fd, identity.error().message.data(), identity.error().message.size());
      return;
    }
    auto server = net::NodeServer::create(o, *identity);
    if (!server) {
      (void)!write(fd, server.error().message.data(), server.error().message.size());
      return;
    }
    const std::string id = (*server)->peer_id();
    (void)(*server)->serve(
        io, "127.0.0.1:0",
        [&](const std::string& a) {
          const std::string line = id + "@" + a;
          (void)!write(fd, line.data(), line.size());
          close(fd);
        },
        kj::NEVER_DONE);
  }

  pid_t pid_ = -1;
  net::PeerAddress address_;
  std::string error_;
};

}  // namespace omni::swarm::test_support
