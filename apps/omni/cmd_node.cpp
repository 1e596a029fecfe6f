// omni node: serves a contiguous range of a model's transformer blocks to clients over the node
// protocol (proto/node.capnp, docs/protocol.md). Prints "omni node: peer <id> listening on
// <host:port>" once it accepts connections (tests parse that line), then serves until killed.
#include <csignal>
#include <cstdio>
#include <kj/async-io.h>

#include "commands.h"
#include "net/identity.h"
#include "net/node_server.h"

namespace omni::cli {
namespace {

struct NodeCommandOptions {
  net::NodeOptions node;
  std::string blocks;
  std::string listen = "0.0.0.0:7000";
  std::string data_dir;
  std::string allow_peers;
  uint64_t max_kv_mib = 2048;
};

int node_fail(const std::string& message) {
  std::fprintf(stderr, "omni node: %s\n", message.c_str());
  return 1;
}

Result<std::pair<uint32_t, uint32_t>> parse_blocks(const std::string& text) {
  unsigned a = 0, b = 0;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%u:%u%c", &a, &b, &tail) != 2 || a >= b)
    return Error{"--blocks '" + text + "' is not A:B with A < B (blocks A to B-1)"};
  return std::make_pair(static_cast<uint32_t>(a), static_cast<uint32_t>(b));
}

int run_node(NodeCommandOptions o) {
  auto blocks = parse_blocks(o.blocks);
  if (!blocks) return node_fail(blocks.error().message);
  o.node.block_begin = blocks->first;
  o.node.block_end = blocks->second;
  o.node.max_kv_bytes = o.max_kv_mib << 20;
  if (!o.allow_peers.empty()) {
    auto allowed = net::read_allow_list(o.allow_peers);
    if (!allowed) return node_fail(allowed.error().message);
    o.node.allow_peers = std::move(*allowed);
  }
  auto identity = net::Identity::load_or_create(o.data_dir.empty() ? net::Identity::default_dir() : o.data_dir);
  if (!identity) return node_fail(identity.error().message);
  auto server = net::NodeServer::create(o.node, std::move(*identity));
  if (!server) return node_fail(server.error().message);
  // A peer that vanishes mid-write must be an error on that connection, not the end of the node.
  std::signal(SIGPIPE, SIG_IGN);
  auto io = kj::setupAsyncIo();
  auto served = (*server)->serve(
      io, o.listen,
      [&](const std::string& address) {
        std::printf("omni node: peer %s listening on %s, blocks %u:%u\n", (*server)->peer_id().c_str(),
                    address.c_str(), o.node.block_begin, o.node.block_end);
        std::fflush(stdout);
      },
      kj::NEVER_DONE);
  if (!served) return node_fail(served.error().message);
  return 0;
}

}  // namespace

void register_node(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<NodeCommandOptions>();
  auto* cmd = app.add_subcommand("node", "Serve a range of a model's blocks to the network");
  cmd->add_option("-m,--model", o->node.model_path, "GGUF model file")->required();
  cmd->add_option("--blocks", o->blocks, "Blocks to serve, A:B (A to B-1)")->required();
  cmd->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--data-dir", o->data_dir, "Directory of the node's identity key (default ~/.omni)");
  cmd->add_option("--max-sessions", o->node.max_sessions, "Sessions open at once")->capture_default_str();
  cmd->add_option("--max-kv-mib", o->max_kv_mib, "KV cache budget over all sessions, MiB")->capture_default_str();
  cmd->add_option("--max-length", o->node.max_length, "Positions per session (default: training context)");
  cmd->add_option("--idle-timeout", o->node.idle_timeout_s, "Free sessions idle this many seconds")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o->node.threads, "Compute threads (default: all cores)");
  cmd->add_option("--allow-peers", o->allow_peers, "File of client peer ids (one a line) allowed to connect");
  cmd->callback([o, &exit_code] { exit_code = run_node(*o); });
}

}  // namespace omni::cli
