// omni-linkemu: a userspace TCP link emulator for tests and benchmarks (see proxy.h, --help).
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "linkemu/options.h"
#include "linkemu/proxy.h"

namespace {
omni::linkemu::Proxy* g_proxy = nullptr;
void on_stop_signal(int) {
  if (g_proxy != nullptr) g_proxy->stop();
}
void on_shaping_signal(int signal) {
  if (g_proxy != nullptr) g_proxy->set_shaping(signal == SIGUSR1);
}
}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto invocation = omni::linkemu::parse_args(args);
  if (!invocation) {
    std::fprintf(stderr, "omni-linkemu: %s\n", invocation.error().message.c_str());
    return 2;
  }
  if (invocation->help) {
    std::fputs(omni::linkemu::usage().c_str(), stdout);
    return 0;
  }
  auto proxy = omni::linkemu::Proxy::start(invocation->config);
  if (!proxy) {
    std::fprintf(stderr, "omni-linkemu: %s\n", proxy.error().message.c_str());
    return 1;
  }
  g_proxy = proxy->get();
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  action.sa_handler = on_shaping_signal;
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGUSR2, &action, nullptr);

  // Scripts wait for this line (and parse the port when --listen asked for port 0).
  std::printf("listening %s\n", (*proxy)->listen_address().c_str());
  std::fflush(stdout);
  auto result = (*proxy)->run();
  g_proxy = nullptr;
  if (!result) {
    std::fprintf(stderr, "omni-linkemu: %s\n", result.error().message.c_str());
    return 1;
  }
  return 0;
}
