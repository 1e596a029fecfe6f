#include "net/node_info.h"

#include "store/model_cid_cache.h"

namespace omni::net {

std::string ModelIdentity::to_string() const {
  return (name.empty() ? "?" : name) + " (" + architecture + ", " + std::to_string(n_layer) + " blocks, d " +
         std::to_string(n_embd) + ", vocab " + std::to_string(n_vocab) + ", " + std::to_string(file_size) +
         " bytes, " + cid.to_string() + ")";
}

Result<ModelIdentity> identify_model(const model::Model& model, const std::string& cache_dir) {
  auto cid = store::model_cid_of_file(model.file(), cache_dir);
  if (!cid) return cid.error();
  return describe_model(model, *cid);
}

ModelIdentity describe_model(const model::Model& model, const store::Cid& cid) {
  ModelIdentity id;
  const auto& c = model.config();
  const gguf::File& f = model.file();
  if (const auto* v = f.metadata().find("general.name"); v && v->as_string()) id.name = std::string(*v->as_string());
  id.architecture = c.arch_name;
  id.n_layer = c.n_layer;
  id.n_embd = c.n_embd;
  id.n_vocab = c.n_vocab;
  id.file_size = f.bytes().size();
  id.cid = cid;
  return id;
}

NodeDescription read_node_info(proto::NodeInfo::Reader info) {
  NodeDescription d;
  d.peer_id = info.getPeerId().cStr();
  d.protocol_version = info.getProtocolVersion();
  for (auto f : info.getFeatures()) d.features.emplace_back(f.cStr());
  auto m = info.getModel();
  d.model.name = m.getName().cStr();
  d.model.architecture = m.getArchitecture().cStr();
  d.model.n_layer = m.getNLayer();
  d.model.n_embd = m.getNEmbd();
  d.model.n_vocab = m.getNVocab();
  d.model.file_size = m.getFileSize();
  // A malformed CID reads as the zero CID, which names no model: the node matches nothing.
  auto c = m.getManifestCid();
  if (auto cid = store::Cid::from_binary({c.begin(), c.size()})) d.model.cid = *cid;
  d.block_begin = info.getBlockBegin();
  d.block_end = info.getBlockEnd();
  d.max_sessions = info.getMaxSessions();
  d.active_sessions = info.getActiveSessions();
  d.max_length = info.getMaxLength();
  d.max_batch_tokens = info.getMaxBatchTokens();
  d.kv_bytes_per_position = info.getKvBytesPerPosition();
  d.kv_bytes_free = info.getKvBytesFree();
  d.max_message_bytes = info.getMaxMessageBytes();
  d.queued_calls = info.getQueuedCalls();
  d.queued_tokens = info.getQueuedTokens();
  d.max_sessions_per_client = info.getMaxSessionsPerClient();
  d.max_queued_tokens_per_client = info.getMaxQueuedTokensPerClient();
  return d;
}

void write_node_info(const NodeDescription& d, proto::NodeInfo::Builder info) {
  info.setPeerId(d.peer_id.c_str());
  info.setProtocolVersion(d.protocol_version);
  auto features = info.initFeatures(static_cast<unsigned>(d.features.size()));
  for (unsigned i = 0; i < d.features.size(); ++i) features.set(i, d.features[i].c_str());
  auto m = info.initModel();
  m.setName(d.model.name.c_str());
  m.setArchitecture(d.model.architecture.c_str());
  m.setNLayer(d.model.n_layer);
  m.setNEmbd(d.model.n_embd);
  m.setNVocab(d.model.n_vocab);
  m.setFileSize(d.model.file_size);
  const std::vector<uint8_t> cid = d.model.cid.to_binary();
  m.setManifestCid(kj::arrayPtr(cid.data(), cid.size()));
  info.setBlockBegin(d.block_begin);
  info.setBlockEnd(d.block_end);
  info.setMaxSessions(d.max_sessions);
  info.setActiveSessions(d.active_sessions);
  info.setMaxLength(d.max_length);
  info.setMaxBatchTokens(d.max_batch_tokens);
  info.setKvBytesPerPosition(d.kv_bytes_per_position);
  info.setKvBytesFree(d.kv_bytes_free);
  info.setMaxMessageBytes(d.max_message_bytes);
  info.setQueuedCalls(d.queued_calls);
  info.setQueuedTokens(d.queued_tokens);
  info.setMaxSessionsPerClient(d.max_sessions_per_client);
  info.setMaxQueuedTokensPerClient(d.max_queued_tokens_per_client);
}

}  // namespace omni::net
