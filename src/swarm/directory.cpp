#include "swarm/directory.h"

#include <algorithm>

namespace omni::swarm {
namespace {

void keep_if_newer(std::map<std::string, NodeRecord>& newest, NodeRecord r) {
  auto it = newest.find(r.peer_id);
  if (it == newest.end() || supersedes(r, it->second)) newest[r.peer_id] = std::move(r);
}

}  // namespace

Result<Lookup> lookup(Directory& directory, const std::string& model_id, int64_t now_ms) {
  auto values = directory.fetch(model_id);
  if (!values) return values.error();
  Lookup out;
  std::map<std::string, NodeRecord> newest;
  for (const auto& v : *values) {
    auto r = verify_record(v, now_ms);
    if (r && !model_id.empty() && r->model_id != model_id)
      r = Error{ErrorCode::InvalidArgument, "record of " + r->peer_id + " is for another model"};
    if (!r) {
      ++out.rejected;
      if (out.reasons.size() < 8) out.reasons.push_back(r.error().message);
      continue;
    }
    keep_if_newer(newest, std::move(*r));
  }
  for (auto& [id, r] : newest) out.records.push_back(std::move(r));
  return out;
}

void keep_newest(std::map<std::string, NodeRecord>& seen, std::vector<NodeRecord> read, int64_t now_ms) {
  for (auto& r : read) keep_if_newer(seen, std::move(r));
  std::erase_if(seen, [now_ms](const auto& entry) { return entry.second.expires_ms <= now_ms; });
}

Result<void> MemoryDirectory::announce(const std::string& model_id, const std::string& peer_id,
                                       std::vector<uint8_t> signed_record) {
  std::lock_guard lock(mutex_);
  values_[model_id][peer_id] = signed_record;
  values_[""][peer_id] = std::move(signed_record);
  return {};
}

Result<std::vector<std::vector<uint8_t>>> MemoryDirectory::fetch(const std::string& model_id) {
  std::lock_guard lock(mutex_);
  std::vector<std::vector<uint8_t>> out;
  if (auto it = values_.find(model_id); it != values_.end())
    for (auto& [slot, bytes] : it->second) out.push_back(bytes);
  return out;
}

Result<void> MemoryDirectory::provide(const std::string& model_cid, const std::string& peer_id,
                                      std::vector<uint8_t> signed_record) {
  std::lock_guard lock(mutex_);
  providers_[model_cid][peer_id] = std::move(signed_record);
  return {};
}

Result<std::vector<std::vector<uint8_t>>> MemoryDirectory::fetch_providers(const std::string& model_cid) {
  std::lock_guard lock(mutex_);
  std::vector<std::vector<uint8_t>> out;
  if (auto it = providers_.find(model_cid); it != providers_.end())
    for (auto& [peer, bytes] : it->second) out.push_back(bytes);
  return out;
}

void MemoryDirectory::inject(const std::string& model_id, const std::string& slot, std::vector<uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  values_[model_id][slot] = std::move(bytes);
}

}  // namespace omni::swarm
