// SwarmWatch: the gateway's live picture of the swarm. A thread of its own reads every node record
// from the directory each refresh_ms (keeping each peer's newest until it expires: a DHT read often
// misses some), or takes a fixed list of nodes (--peers, no directory), probes those nodes (net transport, peer id checked) for liveness, the blocks they
// serve now and their sessions in use, and keeps the result: every node, and per model the
// per-block coverage by the nodes that answered. The dashboard (/v1/swarm), the model list and the
// 503 for a model with a gap all read it.
//
// Bounds: at most max_nodes records are kept and probed (by peer id), so a flood of records costs a
// bounded number of probes per refresh. A node that does not answer, or answers with another model,
// is shown as not alive and counts for no block.
//
// Threads: all methods may be called from any thread; the destructor stops and joins the thread.
// The directory must outlive the watch. With fixed peers, a node's model and blocks are what it
// answers (no record, no CID); one that does not answer is shown with no model.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gateway/swarm_view.h"
#include "net/identity.h"
#include "net/peer_address.h"
#include "swarm/directory.h"
#include "swarm/reputation.h"

namespace omni::gateway {

struct SwarmWatchOptions {
  uint32_t refresh_ms = 2000;
  uint32_t probe_timeout_ms = 1500;
  size_t max_nodes = 256;
  std::vector<net::PeerAddress> peers;  // with no directory: the nodes to watch
  std::function<void(const std::string&)> log;  // directory read failures
  // The gateway's reputation of the nodes (what its sessions saw), shown per node; null: none.
  std::shared_ptr<swarm::ReputationStore> reputation;
};

// One model as the swarm serves it. Its name is the one clients use: the source file's name without
// ".gguf" (with the key's start appended when two models share it); its cid is the one its key
// names (the key is the CID's digest), shared when some node announced that it serves its shards.
struct WatchedModel : SwarmModel {
  std::string key;  // swarm::model_key: the directory's id of the model
  bool complete() const { return n_layer > 0 && missing().empty(); }
};

class SwarmWatch {
 public:
  // `directory` null: watch options.peers.
  SwarmWatch(swarm::Directory* directory, net::Identity identity, SwarmWatchOptions options = {});
  ~SwarmWatch();
  SwarmWatch(const SwarmWatch&) = delete;
  SwarmWatch& operator=(const SwarmWatch&) = delete;

  // Waits until a read that began after this call has finished, or `timeout_ms` passed; false then.
  bool wait_for_read(uint32_t timeout_ms) const;
  std::vector<WatchedModel> models() const;
  std::optional<WatchedModel> model(const std::string& key) const;
  // Nodes and models as the dashboard shows them (SwarmNode.model is WatchedModel::name).
  SwarmSnapshot snapshot() const;

 private:
  void loop();
  void refresh(std::map<std::string, swarm::NodeRecord>& seen);

  swarm::Directory* directory_;
  const net::Identity identity_;
  const SwarmWatchOptions options_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<WatchedModel> models_;
  SwarmSnapshot snapshot_;
  uint64_t reads_started_ = 0, reads_done_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace omni::gateway
