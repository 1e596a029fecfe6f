// NodeServer: serves a block range of one GGUF model over the node protocol (proto/node.capnp):
// accepts TLS connections, runs the handshake and access control, and hosts many inference
// sessions at once.
//
// Threads: the kj event loop thread (the caller of serve()) does all networking, validation and
// bookkeeping; one compute thread runs every forward pass, one at a time, on a ThreadPool of
// `threads`. So the event loop stays responsive (info, refusals, other clients' messages) while a
// long prompt computes, and the pool is never used by two passes at once.
//
// Connections: admitted within max_connections (total and per source address; a refusal is an
// Abort naming the limit); a peer not on --allow-peers is refused right after TLS, before any RPC;
// messages are read through a GuardedMessageStream (small before hello, bounded capability tables
// and open calls, a receive budget over all connections, no reading while answers pile up unsent);
// deadlines for TLS and hello, an idle timeout for connections without sessions and for answers
// left unread, TCP keepalive. Out of file descriptors, the accept loop backs off
// and keeps serving.
//
// Limits and refusals (each an RPC error naming the limit): max sessions and the KV budget
// (`overloaded`); per client (peer id, and source address) sessions, waiting ring sinks and queued
// tokens (`overloaded`, naming the client key and the flag); request size up to twice max_message_bytes, batch size, session length, token
// ids, hidden-state shape/encoding/finiteness, positions (`failed`; the connection and session stay
// usable); a message over twice the limit, or bytes that are not the protocol, close that
// connection only. Sessions idle longer than the idle timeout are freed; only accepted work (a call
// that passed validation) counts as use, so refused calls do not keep a session alive.
//
// Fairness: compute is shared between clients (by source address, or peer id without one) by
// deficit round robin with cost = tokens (compute_worker.h), each call computed a slice of
// compute_slice_tokens rows at a time, so one client's flood delays another's call by about one
// slice. Slices of different sessions' calls that queue while a pass runs are merged into the
// next pass, up to max_pass_tokens (one weight read for all; outputs bit for bit as alone); a call
// that finds the node idle runs at once. NodeInfo reports the load: queued calls and tokens,
// active sessions, and the per-client session limit.
//
// Chains and rings: a session opened with downstream hops connects to the next node itself (TLS
// checks that it holds the hop's peer id) and forwards every output there; a hop that cannot be
// reached or proven fails the open with a generic "next hop unreachable" (Unavailable), the
// details only in the node's log. The first fast_hop_failures_per_minute such failures in a minute
// (node-wide) are answered at once, so that a client re-routing around a node that just died is
// not held up; beyond them each is answered no sooner than connect_timeout_s after the attempt
// began, so the node cannot be used to scan other hosts' ports at speed; at the end of a ring (OpenParams.ringToken) the output goes to the
// sink the client attached on this node, and the replies along the chain only acknowledge.
//
// Credits: with a ledger (NodeOptions::ledger) the node takes the work receipts its clients sign
// (Node.payReceipts) and acknowledges them only once stored durably. The SQLite commit (an fsync)
// runs on the event loop thread: a few milliseconds per call, bounded by the per-client rate.
#pragma once

#include <kj/async-io.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "base/result.h"
#include "model/model.h"
#include "net/bandwidth.h"
#include "net/credit_ledger.h"
#include "net/identity.h"
#include "net/node_info.h"

namespace omni::net {

struct NodeOptions {
  std::string model_path;
  uint32_t block_begin = 0;
  uint32_t block_end = 0;                  // exclusive; <= the model's n_layer
  uint32_t max_sessions = 16;
  uint64_t max_kv_bytes = 2048ull << 20;   // KV budget over all sessions
  uint32_t idle_timeout_s = 300;
  int threads = 0;                         // 0: all cores
  uint32_t max_length = 0;                 // positions per session; 0: the model's training context
  uint32_t max_batch_tokens = 512;
  uint64_t max_message_bytes = 64ull << 20;  // largest forward request processed (NodeInfo.maxMessageBytes)
  std::optional<std::set<std::string>> allow_peers;  // set: only these client ids may connect
  // Per client (sessions and sinks: its peer id, and separately its source address; client_quota.h).
  // 0: the default, half of max_sessions (rounded up) for sessions and sinks, 4 x max_batch_tokens
  // for queued tokens.
  uint32_t max_sessions_per_client = 0;
  uint32_t max_sinks_per_client = 0;       // ring sinks waiting for their session
  uint64_t max_queued_tokens_per_client = 0;  // tokens of accepted calls not yet computed, per
                                              // scheduler key (address, or peer id without one)
  // A forward call is computed this many rows at a time, and other clients' calls run between the
  // slices (bit-identical to one batch); >= 2. Also each client's turn in the compute scheduler.
  uint32_t compute_slice_tokens = 16;
  // Tokens of one compute pass over the slices of different sessions' calls merged into it
  // (ComputeWorker: steps that queued while a pass ran share the next); 1: each slice alone.
  // Not a limit on calls (max_batch_tokens is): the first slice of a pass always runs.
  uint32_t max_pass_tokens = 512;
  // False: clients are counted by peer id only (a node reached only through its relay sees every
  // relayed client come from the relay's hand-over on loopback).
  bool limit_by_address = true;
  uint32_t connect_timeout_s = 10;         // when opening the next hop of a chain
  uint32_t fast_hop_failures_per_minute = 8;  // unreachable hops answered at once (see above)
  // Hostile clients (docs/security.md, "Node"): a connection must finish TLS within
  // hello_timeout_s and say hello within hello_timeout_s more; a greeted connection holding no open session
  // is closed after connection_idle_timeout_s without a message; a message that stops arriving for
  // hello_timeout_s ends its connection.
  uint32_t hello_timeout_s = 10;
  uint32_t connection_idle_timeout_s = 300;
  uint32_t max_connections = 512;          // at once, in total
  uint32_t max_connections_per_source = 64;  // at once, from one address (IPv6: one /64)
  // Bytes of incoming messages held at once over all connections (GuardedMessageStream).
  uint64_t max_receive_buffer_bytes = 512ull << 20;
  uint32_t call_timeout_s = 120;           // for a forward on the next hop
  // Set: every connection of the node (accepted, and to next hops) counts against these caps.
  std::shared_ptr<Bandwidth> bandwidth;

  // Set: the model comes from here instead of model_path (e.g. src/store's load_model from shards).
  // It must hold the blocks [block_begin, block_end) and, when block_begin is 0, the embeddings.
  std::function<Result<std::unique_ptr<model::Model>>()> load_model;
  // Set: the identity announced in NodeInfo instead of identify_model of the model's file (which
  // hashes the whole file): a model loaded from shards announces its manifest's, which is the one
  // its source file has, so it chains with file nodes; NodeRuntime passes the cached one.
  std::optional<ModelIdentity> model_identity;
  // Set: the node serves content-addressed blobs (feature "blobs", Gate.openBlobs); called once per
  // connection that asks, on the event loop thread, for a proto::BlobStore capability
  // (store::BlobService::client). Kept generic so that src/net does not depend on src/store.
  std::function<capnp::Capability::Client()> blob_service;
  // Set: every computed output (encoded rows, as sent) passes through this, on the compute thread,
  // before it is signed and sent. Only test doubles of lying nodes set it (tests/liar_node).
  std::function<void(std::vector<uint8_t>& rows)> output_filter;
  // Set: the node takes work receipts (feature "receipts", Node.payReceipts): each is checked
  // (check_receipt: signed, for this node, its model and blocks, within a day) and stored here
  // before the call is answered. A client (by peer id, and by address) may present at most
  // max_receipts_per_minute receipts a minute, valid or not (receipt_rate.h).
  std::shared_ptr<CreditLedger> ledger;
  uint32_t max_receipts_per_minute = 600;
};

// Reads a --allow-peers file: one peer id per line; blank lines and '#' comments ignored.
Result<std::set<std::string>> read_allow_list(const std::string& path);

class NodeServer {
 public:
  // Loads the blocks (and the embeddings when block_begin is 0). Errors name the file or option.
  static Result<std::unique_ptr<NodeServer>> create(const NodeOptions& options, Identity identity);
  ~NodeServer();

  // Listens on `listen` ("HOST:PORT", port 0 = any), calls `on_listening("HOST:PORT")` with the
  // bound address, and serves until `stop` resolves. Runs on the calling thread's kj event loop
  // (`io` from kj::setupAsyncIo on this thread). Errors: the address cannot be bound.
  Result<void> serve(kj::AsyncIoContext& io, const std::string& listen,
                     const std::function<void(const std::string&)>& on_listening, kj::Promise<void> stop);

  const std::string& peer_id() const;
  // Sessions open now (on the event loop thread: between serve()'s events, or from a callback of
  // its loop). A node about to change its blocks waits for this to reach 0.
  uint32_t active_sessions() const;
  // Paused (a reason given): openSession is refused with Unavailable "node paused: <why>" and
  // NodeInfo reports the node full (activeSessions = maxSessions), so clients and routing pass it
  // by; open sessions go on. Unpaused (nullopt): serves as before. Event loop thread, as above.
  void set_paused(std::optional<std::string> why);

  struct State;  // shared with the RPC objects; defined in node_server.cpp

 private:
  explicit NodeServer(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace omni::net
