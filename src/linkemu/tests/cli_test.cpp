// The omni-linkemu executable: the 'listening' line scripts parse, signals, and argument errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <chrono>
#include <string>
#include <thread>

#include "test_net.h"

extern char** environ;

namespace omni::linkemu {
namespace {

using namespace testing;

struct Child {
  pid_t pid = -1;
  FILE* out = nullptr;  // the child's stdout
  FILE* err = nullptr;  // the child's stderr
};

Child spawn(const std::vector<std::string>& args) {
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addclose(&actions, err_pipe[0]);
  std::vector<std::string> all{OMNI_LINKEMU_EXE};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  Child c;
  if (posix_spawn(&c.pid, OMNI_LINKEMU_EXE, &actions, nullptr, argv.data(), environ) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  c.out = fdopen(out_pipe[0], "r");
  c.err = fdopen(err_pipe[0], "r");
  return c;
}

std::string read_line(FILE* f) {
  char line[512];
  if (std::fgets(line, sizeof line, f) == nullptr) return "";
  return line;
}

std::string read_all(FILE* f) {
  std::string out;
  char chunk[512];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) out.append(chunk, n);
  return out;
}

int wait_exit(Child& c) {
  int status = 0;
  waitpid(c.pid, &status, 0);
  std::fclose(c.out);
  std::fclose(c.err);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(Cli, PrintsTheListeningPortAndForwardsWithDelay) {
  Server server(echo);
  Child child = spawn({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:" + std::to_string(server.port()),
                       "--delay-ms", "10", "--jitter-ms", "0", "--rate-mbit", "50"});
  ASSERT_GT(child.pid, 0);
  const std::string line = read_line(child.out);
  ASSERT_EQ(line.rfind("listening 127.0.0.1:", 0), 0u) << line;
  const int port = std::stoi(line.substr(std::string("listening 127.0.0.1:").size()));
  ASSERT_GT(port, 0);
  const int fd = connect_to(static_cast<std::uint16_t>(port));
  ASSERT_GE(fd, 0);
  const double t0 = now_ms();
  ASSERT_TRUE(send_all(fd, "ping", 4));
  char back[4];
  ASSERT_TRUE(recv_all(fd, back, 4));
  const double rtt = now_ms() - t0;
  close(fd);
  EXPECT_EQ(std::string(back, 4), "ping");
  EXPECT_GE(rtt, 20 - 0.2);
  EXPECT_LE(rtt, 20 + 30);  // one sample: generous
  kill(child.pid, SIGTERM);
  EXPECT_EQ(wait_exit(child), 0);  // a clean stop on SIGTERM
}

TEST(Cli, SignalsSwitchTheEmulationOnAndOff) {
  Server server(echo);
  Child child = spawn({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:" + std::to_string(server.port()),
                       "--delay-ms", "30", "--start-unshaped"});
  ASSERT_GT(child.pid, 0);
  const std::string line = read_line(child.out);
  ASSERT_EQ(line.rfind("listening 127.0.0.1:", 0), 0u) << line;
  const int fd = connect_to(static_cast<std::uint16_t>(std::stoi(line.substr(20))));
  ASSERT_GE(fd, 0);
  auto ping = [&] {
    char buf[4] = {'p', 'i', 'n', 'g'};
    const double t0 = now_ms();
    if (!send_all(fd, buf, 4) || !recv_all(fd, buf, 4)) return -1.0;
    return now_ms() - t0;
  };
  EXPECT_LT(ping(), 30);  // unshaped
  kill(child.pid, SIGUSR1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GE(ping(), 60 - 0.2);
  kill(child.pid, SIGUSR2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LT(ping(), 30);
  close(fd);
  kill(child.pid, SIGTERM);
  EXPECT_EQ(wait_exit(child), 0);
}

TEST(Cli, BadArgumentsAreRefusedWithAReason) {
  Child child = spawn({"--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--delay-ms", "soon"});
  ASSERT_GT(child.pid, 0);
  const std::string err = read_all(child.err);
  EXPECT_EQ(wait_exit(child), 2);
  EXPECT_NE(err.find("--delay-ms: expected a non-negative number, got 'soon'"), std::string::npos) << err;

  child = spawn({"--listen", "127.0.0.1:0"});
  const std::string missing = read_all(child.err);
  EXPECT_EQ(wait_exit(child), 2);
  EXPECT_NE(missing.find("--target HOST:PORT is required"), std::string::npos) << missing;
}

TEST(Cli, UnresolvableTargetIsAnError) {
  Child child = spawn({"--listen", "127.0.0.1:0", "--target", "no-such-host.invalid:80"});
  ASSERT_GT(child.pid, 0);
  const std::string err = read_all(child.err);
  EXPECT_EQ(wait_exit(child), 1);
  EXPECT_NE(err.find("cannot resolve no-such-host.invalid:80"), std::string::npos) << err;
}

TEST(Cli, Help) {
  Child child = spawn({"--help"});
  ASSERT_GT(child.pid, 0);
  const std::string out = read_all(child.out);
  EXPECT_EQ(wait_exit(child), 0);
  EXPECT_NE(out.find("usage: omni-linkemu"), std::string::npos);
}

}  // namespace
}  // namespace omni::linkemu
