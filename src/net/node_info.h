// NodeInfo in C++ form (the capnp NodeInfo/ModelIdentity, see proto/node.capnp), the protocol
// constants, and how a model's identity is computed from its content.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "model/model.h"
#include "proto/node.capnp.h"
#include "store/cid.h"

namespace omni::net {

// Features this build speaks (proto Hello.requiredFeatures lists the names).
inline const std::vector<std::string>& supported_features() {
  static const std::vector<std::string> features{"hidden-f32", "hidden-f16", "hidden-q8", "chain", "rollback",
                                                 "explicit-position"};
  return features;
}

// Which model: its manifest CID (store/shard.h), which hashes every byte of every shard, so two
// files share an identity only if their weights are the same bytes (a file-based node and a node
// serving the shards of that file announce the same CID). The other fields are for people and for
// checks that need no hashing (n_embd of a hidden state); equality compares them all.
struct ModelIdentity {
  std::string name, architecture;
  uint32_t n_layer = 0, n_embd = 0, n_vocab = 0;
  uint64_t file_size = 0;  // of the source GGUF file
  store::Cid cid;

  bool operator==(const ModelIdentity&) const = default;
  std::string to_string() const;  // "name (arch, N blocks, d E, vocab V, S bytes, bafkrei...)"
};

// The identity of a model loaded from a whole GGUF file (model.file() is that file): its metadata
// and the CID of store::compute_manifest of the file. With `cache_dir`, the CID is kept there and
// reused while the file is unchanged (store/model_cid_cache.h). Errors: the store's, for a file
// that cannot be split into shards.
Result<ModelIdentity> identify_model(const model::Model& model, const std::string& cache_dir = "");
// The identity of `model` when its CID is already known (a model loaded from its shards: the
// manifest's CID, see identify_sharded_model in peer_fetch.h).
ModelIdentity describe_model(const model::Model& model, const store::Cid& cid);

struct NodeDescription {
  std::string peer_id;
  uint32_t protocol_version = 0;
  std::vector<std::string> features;
  ModelIdentity model;
  uint32_t block_begin = 0, block_end = 0;
  uint32_t max_sessions = 0, active_sessions = 0, max_length = 0, max_batch_tokens = 0;
  uint64_t kv_bytes_per_position = 0, kv_bytes_free = 0, max_message_bytes = 0;
  // Load, for routing: calls accepted and not yet computed and their tokens not yet computed, and
  // the sessions one client may hold. 0 from a node older than these fields.
  uint32_t queued_calls = 0;
  uint64_t queued_tokens = 0;
  uint32_t max_sessions_per_client = 0;
  uint64_t max_queued_tokens_per_client = 0;  // what a pipelining client may have queued there
};

NodeDescription read_node_info(proto::NodeInfo::Reader info);
void write_node_info(const NodeDescription& d, proto::NodeInfo::Builder info);

}  // namespace omni::net
