// liar_node: a test double of a lying node (issue 16; not installed). It is a real node
// (swarm::NodeRuntime: it joins a swarm, announces its blocks and serves them) whose outputs are
// changed after they are computed and before they are signed: the sign bit of the first value of
// the returned rows flips, so the lie is a finite, well-formed hidden state that only a second
// replica can tell from the truth.
//
//   liar_node --lie always|every:N|after:M -m MODEL --blocks A:B --listen HOST:PORT --data-dir DIR
//             [--bootstrap HOST:PORT]
//
// always: every call; every:N: one call in N (the Nth, 2Nth, ...); after:M: every call after the
// first M (honest while it warms up). Prints "liar_node: peer ID listening on HOST:PORT, blocks A:B"
// as `omni node` does, and serves until SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "base/parse.h"
#include "swarm/node_runtime.h"

namespace {

// A count of 1 or more in decimal, or nothing.
std::optional<uint64_t> count(const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoull(text);
}

int usage(const char* why) {
  std::fprintf(stderr,
               "liar_node: %s\nusage: liar_node --lie always|every:N|after:M -m MODEL --blocks A:B --listen HOST:PORT "
               "--data-dir DIR [--bootstrap HOST:PORT]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace omni;
  swarm::NodeRuntimeOptions r;
  std::string lie, blocks;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--lie") lie = value;
    else if (flag == "-m") r.model = value;
    else if (flag == "--blocks") blocks = value;
    else if (flag == "--listen") r.listen = value;
    else if (flag == "--data-dir") r.data_dir = value;
    else if (flag == "--bootstrap") r.swarm.bootstrap.push_back(value);
    else return usage(("unknown flag " + flag).c_str());
  }
  if (argc % 2 == 0) return usage("every flag takes a value");
  uint64_t every = 1, after = 0;
  if (lie == "always") {
  } else if (lie.rfind("every:", 0) == 0) {
    auto n = count(lie.substr(6));
    if (!n || *n == 0) return usage("every:N needs N >= 1");
    every = *n;
  } else if (lie.rfind("after:", 0) == 0) {
    auto m = count(lie.substr(6));
    if (!m) return usage("after:M needs a number");
    after = *m;
  } else {
    return usage("--lie is always, every:N or after:M");
  }
  auto range = parse_block_range(blocks);
  if (!range) return usage(range.error().message.c_str());
  r.blocks = swarm::Span{range->begin, range->end};
  r.node.threads = 1;
  // Runs on the node's one compute thread: a plain counter is enough.
  r.node.output_filter = [every, after, calls = uint64_t{0}](std::vector<uint8_t>& rows) mutable {
    ++calls;
    if (calls > after && calls % every == 0 && rows.size() > 1) rows[1] ^= 0x80;
  };
  r.log = [](const std::string& line) { std::fprintf(stderr, "liar_node: %s\n", line.c_str()); };
  r.on_listening = [](const swarm::NodeEndpoint& e) {
    std::printf("liar_node: peer %s listening on %s, blocks %u:%u\n", e.peer_id.c_str(), e.address.c_str(),
                e.blocks.begin, e.blocks.end);
    std::fflush(stdout);
  };
  std::signal(SIGPIPE, SIG_IGN);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto node = swarm::NodeRuntime::start(std::move(r));
  if (!node) {
    std::fprintf(stderr, "liar_node: %s\n", node.error().message.c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  (*node)->stop();
  auto served = (*node)->wait();
  return served ? 0 : 1;
}
