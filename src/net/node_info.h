// NodeInfo in C++ form (the capnp NodeInfo/ModelIdentity, see proto/node.capnp), the protocol
// constants, and how a model's identity is computed from its GGUF file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "proto/node.capnp.h"

namespace omni::net {

// Features this build speaks (proto Hello.requiredFeatures lists the names).
inline const std::vector<std::string>& supported_features() {
  static const std::vector<std::string> features{"hidden-f32", "hidden-f16", "hidden-q8", "chain", "rollback",
                                                 "explicit-position"};
  return features;
}

struct ModelIdentity {
  std::string name, architecture;
  uint32_t n_layer = 0, n_embd = 0, n_vocab = 0;
  uint64_t file_size = 0;
  std::string header_sha256;  // 32 raw bytes

  bool operator==(const ModelIdentity&) const = default;
  std::string to_string() const;  // "name (arch, N blocks, d E, vocab V, header sha256 1a2b3c4d...)"
};

// sha2-256 of the bytes before the tensor data, plus the hyper-parameters (see node.capnp).
ModelIdentity identify_model(const model::Model& model);

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
};

NodeDescription read_node_info(proto::NodeInfo::Reader info);
void write_node_info(const NodeDescription& d, proto::NodeInfo::Builder info);

}  // namespace omni::net
