// omni relay: makes nodes behind NAT reachable (src/net/relay_server.h, docs/protocol.md "Relay").
// Nodes register with `omni node --relay HOST:PORT`; clients then reach them as
// "ID@relay:HOST:PORT". Prints "omni relay: peer <id> listening on <host:port>" once it accepts
// connections (tests parse that line), then one line per registration and relayed connection.
#include <csignal>
#include <cstdio>
#include <kj/async-io.h>

#include "base/fd_limit.h"
#include "cli_options.h"
#include "commands.h"
#include "net/identity.h"
#include "net/relay_server.h"

namespace omni::cli {
namespace {

struct RelayCommandOptions {
  net::RelayOptions relay;
  std::string listen = "0.0.0.0:7100";
  std::string data_dir;
  // Seconds as given; the relay counts whole seconds.
  double idle_timeout_s = net::RelayOptions{}.idle_timeout_s;
  double keepalive_s = net::RelayOptions{}.keepalive_s;
  double dial_timeout_s = net::RelayOptions{}.dial_timeout_s;
  double handshake_timeout_s = net::RelayOptions{}.handshake_timeout_s;
  double first_byte_timeout_s = net::RelayOptions{}.first_byte_timeout_s;
};

int run_relay(RelayCommandOptions o) {
  auto fail = [](const Error& e) { return cli::fail("relay", e); };
  o.relay.idle_timeout_s = whole_seconds(o.idle_timeout_s);
  o.relay.keepalive_s = whole_seconds(o.keepalive_s);
  o.relay.dial_timeout_s = whole_seconds(o.dial_timeout_s);
  o.relay.handshake_timeout_s = whole_seconds(o.handshake_timeout_s);
  o.relay.first_byte_timeout_s = whole_seconds(o.first_byte_timeout_s);
  auto identity = net::Identity::load_or_create(data_dir_or_default(o.data_dir));
  if (!identity) return fail(identity.error());
  o.relay.log = [](const std::string& line) {
    std::fprintf(stderr, "omni relay: %s\n", line.c_str());
    std::fflush(stderr);
  };
  auto server = net::RelayServer::create(o.relay, std::move(*identity));
  if (!server) return fail(server.error());
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanishes mid-write is an error on that connection only
  // Every relayed connection holds two descriptors: take all the process may have.
  if (auto files = raise_fd_limit(); !files) std::fprintf(stderr, "omni relay: %s\n", files.error().message.c_str());
  auto io = kj::setupAsyncIo();
  auto served = (*server)->serve(
      io, o.listen,
      [&](const std::string& address) {
        std::printf("omni relay: peer %s listening on %s\n", (*server)->peer_id().c_str(), address.c_str());
        std::fflush(stdout);
      },
      kj::NEVER_DONE);
  if (!served) return fail(served.error());
  return 0;
}

}  // namespace

void register_relay(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<RelayCommandOptions>();
  auto* cmd = app.add_subcommand("relay", "Relay connections to nodes that cannot accept them (behind NAT)");
  add_host_port(cmd, "--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  add_host_port(cmd, "--announce", o->relay.public_address,
                "HOST:PORT at which clients reach this relay, told to nodes (default: the address each node dialed)");
  add_data_dir(cmd, o->data_dir, "Directory of the relay's identity key");
  cmd->add_option("--max-nodes", o->relay.max_nodes, "Nodes registered at once")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  cmd->add_option("--max-per-node", o->relay.max_per_node, "Relayed connections open to one node at once")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  cmd->add_option("--max-relayed", o->relay.max_relayed, "Relayed connections open at once, in all")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  cmd->add_option("--max-per-source", o->relay.max_per_source,
                  "Relayed connections open at once from one client address (IP), to all nodes")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  cmd->add_option("--max-pending-per-source", o->relay.max_pending_per_source,
                  "Connections from one client address waiting at once for nodes to dial back")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  cmd->add_option("--max-unidentified", o->relay.max_unidentified,
                  "Connections still sending their first line, in all (beyond: closed at once)")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  cmd->add_option("--max-unidentified-per-source", o->relay.max_unidentified_per_source,
                  "Connections from one address still sending their first line (beyond: closed at once)")
      ->capture_default_str()
      ->check(count_in(1, UINT32_MAX));
  add_timeout(cmd, "--handshake-timeout", o->handshake_timeout_s,
              "Seconds a connection has for its first line (and a node's control connection for TLS)")
      ->capture_default_str();
  add_timeout(cmd, "--first-byte-timeout", o->first_byte_timeout_s,
              "Seconds a relayed client has, after OK, to send its first byte")
      ->capture_default_str();
  add_timeout(cmd, "--idle-timeout", o->idle_timeout_s, "Close a relayed connection idle this many seconds")
      ->capture_default_str();
  add_timeout(cmd, "--keepalive", o->keepalive_s, "Seconds between a node's pings (3 missed: dropped)")
      ->capture_default_str();
  add_timeout(cmd, "--dial-timeout", o->dial_timeout_s, "Seconds a node has to dial back for a client")
      ->capture_default_str();
  cmd->callback([o, &exit_code] { exit_code = run_relay(*o); });
}

}  // namespace omni::cli
