// NodeRuntime: a whole node (`omni node`) as a library. It gets the model (a GGUF file, or a model
// CID whose shards it fetches from peers into its store), serves a block range of it over the
// node protocol (net/node_server.h), serves its store's blobs to fetching peers, is reachable
// through a relay when asked (net/relay_client.h), and in a swarm joins the directory, announces
// itself and, when it chose its own blocks, moves them when that helps the swarm (membership.h,
// move_drain.h).
//
// Threads: start() prepares everything on the calling thread (join, fetch, model load), then
// serves on a thread of its own (a kj event loop); the callbacks of the options run there. stop()
// may be called from any thread (e.g. one that waits for SIGTERM), but not from a signal handler:
// the node waits up to drain_timeout_s for its open sessions to end, stops serving (closing its
// listener and the relay's control connection), stops refreshing its swarm record (which then
// expires after record_ttl_s) and joins its threads. The process should ignore SIGPIPE (a peer
// that vanishes mid-write is an error on that connection only).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "base/result.h"
#include "net/identity.h"
#include "net/node_server.h"
#include "net/peer_address.h"
#include "store/cid.h"
#include "store/fetch.h"
#include "swarm/assignment.h"
#include "swarm/membership.h"
#include "swarm/owner_activity.h"

namespace omni::swarm {

// Where and what the node serves, as told to on_listening / on_relayed.
struct NodeEndpoint {
  std::string peer_id;
  std::string address;  // "HOST:PORT" bound, or "<peer id>@relay:HOST:PORT"
  Span blocks;
};

struct NodeRuntimeOptions {
  // A GGUF file, or a model CID (and no file of that name): the node then serves the shards its
  // blocks need from its store, fetching those it lacks from `peers`, or in a swarm (needs
  // `blocks`) from the nodes that announce them (provider_fetch.h). A node with a store announces
  // in the swarm which of the model's shards it serves (provider_record.h).
  std::string model;
  std::string store_dir;          // default <data_dir>/store
  std::string peers;              // [ID@]HOST:PORT or ID@relay:HOST:PORT,... to fetch a CID's shards from
  bool share = false;             // with a file: shard it into the store and serve the shards
  uint32_t fetch_timeout_s = 60;  // before a silent peer is dropped while fetching
  std::optional<Span> blocks;     // [begin, end); without it a swarm member chooses its own
  std::optional<std::string> listen;  // "HOST:PORT" (port 0: any); default 0.0.0.0:7000, with a relay
                                      // 127.0.0.1:0 (only the relay's connections, handed over locally)
  std::string relay;              // [ID@]HOST:PORT of a relay to be reachable through
  // Ask the home router for a port mapping (UPnP-IGD, else NAT-PMP; port_mapping_keeper.h) once
  // listening, and announce the router's external address first. Not found or refused: logged,
  // the node serves on as without it.
  bool upnp = false;
  // Set (--when-idle): serve only while the machine's own user is not busy (owner_activity.h),
  // sampled every second; while busy the node is paused (net::NodeServer::set_paused: no new
  // session, reported full so routing passes it by), logging "paused: ..." and "resumed: ...".
  std::optional<IdlePolicy> when_idle;
  // Where --when-idle reads CPU time (tests); null: /proc.
  std::function<std::unique_ptr<CpuSource>()> cpu_source;
  std::string data_dir;           // the identity key's directory; default net::Identity::default_dir();
                                  // locked while the node runs (net::IdentityLock); the node's
                                  // credit ledger lives there too (net::CreditLedger)
  std::string allow_peers;        // file of the client peer ids allowed to connect; empty: all
  uint64_t max_kv_mib = 2048;     // KV cache budget over all sessions
  uint32_t drain_timeout_s = 30;  // how long a move, or stop(), waits for open sessions to end
  // Sessions, lengths, idle timeout, threads; the runtime sets the model, blocks, KV budget, access
  // list and blob service itself.
  net::NodeOptions node;
  JoinOptions swarm;              // joins a swarm when swarm.joins(); bootstrap_only is not a node

  std::function<void(const std::string&)> log;  // progress and trouble, one line each
  std::function<void(const store::FetchProgress&, bool done)> fetch_progress;
  // Each time the node listens (again, after a move: the same address, new blocks).
  std::function<void(const NodeEndpoint&)> on_listening;
  // Each (re)registration at the relay.
  std::function<void(const NodeEndpoint&)> on_relayed;
  // With upnp, once the router has mapped the port: the external address and the method.
  std::function<void(const NodeEndpoint&, const std::string& method)> on_mapped;
};

class NodeRuntime {
 public:
  // Prepares the node and returns once it listens. Errors: no model, a bad --blocks, --listen or
  // --relay, blocks beyond the model's (InvalidArgument); a model file or CID that cannot be
  // found, or a CID whose shards are missing with no --peers or swarm to fetch them from, or that
  // no node of the swarm provides (NotFound);
  // unreachable peers (Unavailable); another node using the data directory (AlreadyExists); joining
  // the swarm, loading the model, binding the address.
  static Result<std::unique_ptr<NodeRuntime>> start(NodeRuntimeOptions options);
  // stop(), then wait().
  ~NodeRuntime();
  NodeRuntime(const NodeRuntime&) = delete;
  NodeRuntime& operator=(const NodeRuntime&) = delete;

  // Asks the node to shut down (see the header comment); returns at once. Idempotent.
  void stop();
  // Blocks until the node has shut down (after stop(), or an error while serving); the error, if
  // serving failed. One caller.
  Result<void> wait();

  const std::string& peer_id() const { return identity_.peer_id(); }
  // The bound "HOST:PORT" (the same across moves).
  std::string address() const;
  // The blocks served now (they change when the node moves).
  Span blocks() const;
  // The model's CID when the node serves it from its store (started from a CID, or --share).
  const std::optional<store::Cid>& model_cid() const { return model_cid_; }
  // The model's identity as the node announces it (NodeInfo.model): its source file's name,
  // architecture, size and header hash, which clients and other nodes must match.
  const net::ModelIdentity& model_identity() const { return model_identity_; }

 private:
  struct Prepared;
  NodeRuntime() = default;
  void serve_loop();
  Result<void> serve();
  void log(const std::string& line) const;

  std::optional<net::IdentityLock> identity_lock_;  // first: released after everything else stopped
  NodeRuntimeOptions options_;
  net::Identity identity_;
  std::string listen_;
  std::optional<net::PeerAddress> relay_;
  bool rebalances_ = false;
  std::optional<store::Cid> model_cid_;
  net::ModelIdentity model_identity_;
  std::shared_ptr<Prepared> prepared_;  // store, blob service, server, membership

  mutable std::mutex mutex_;  // everything below
  std::condition_variable changed_;
  std::string address_;
  Span blocks_;
  bool listening_ = false;
  bool finished_ = false;
  bool stop_requested_ = false;
  std::optional<Error> failure_;
  std::function<void()> wake_;  // set while serving: makes the event loop see stop_requested_
  std::thread thread_;
};

}  // namespace omni::swarm
