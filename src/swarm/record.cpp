#include "swarm/record.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "base/parse.h"
#include "net/peer_address.h"
#include "net/peer_id.h"
#include "store/cid.h"
#include "swarm/signed_envelope.h"

namespace omni::swarm {
namespace {

constexpr EnvelopeKind kNodeRecord{"OMNIREC1", "omni-swarm-record-v1", kMaxRecordBytes, "node record"};
// A record issued this far ahead of the reader's clock is refused (clock skew allowance).
constexpr int64_t kMaxFutureMs = 5 * 60 * 1000;

std::string to_json(const NodeRecord& r) {
  nlohmann::json j;
  j["peer"] = r.peer_id;
  j["addrs"] = r.addresses;
  j["model"] = r.model_id;
  j["name"] = r.model_name;
  if (!r.model_cid.empty()) j["cid"] = r.model_cid;
  j["layers"] = r.n_layer;
  j["begin"] = r.block_begin;
  j["end"] = r.block_end;
  j["tps"] = r.block_tps;
  j["free"] = r.free_sessions;
  j["max"] = r.max_sessions;
  j["proto"] = r.protocol_version;
  j["issued"] = r.issued_ms;
  j["expires"] = r.expires_ms;
  j["seq"] = r.seq;
  if (!r.links.empty()) {
    auto& links = j["links"] = nlohmann::json::array();
    for (const auto& l : r.links) links.push_back({l.peer_id, l.rtt_ms});
  }
  return j.dump();
}

Result<NodeRecord> from_json(std::string_view text) {
  // Parsing runs only on signed bytes, but a node's own bugs must still give an error, not a crash.
  try {
    auto j = nlohmann::json::parse(text);
    NodeRecord r;
    r.peer_id = j.at("peer").get<std::string>();
    r.addresses = j.at("addrs").get<std::vector<std::string>>();
    r.model_id = j.at("model").get<std::string>();
    r.model_name = j.at("name").get<std::string>();
    if (j.contains("cid")) r.model_cid = j.at("cid").get<std::string>();
    r.n_layer = j.at("layers").get<uint32_t>();
    r.block_begin = j.at("begin").get<uint32_t>();
    r.block_end = j.at("end").get<uint32_t>();
    r.block_tps = j.at("tps").get<double>();
    r.free_sessions = j.at("free").get<uint32_t>();
    r.max_sessions = j.at("max").get<uint32_t>();
    r.protocol_version = j.at("proto").get<uint32_t>();
    r.issued_ms = j.at("issued").get<int64_t>();
    r.expires_ms = j.at("expires").get<int64_t>();
    r.seq = j.at("seq").get<uint64_t>();
    if (auto links = j.find("links"); links != j.end()) {
      if (!links->is_array() || links->size() > kMaxLinks)
        return Error{ErrorCode::Corruption, "malformed record payload: links is not a list of at most " +
                                                std::to_string(kMaxLinks)};
      for (const auto& l : *links) r.links.push_back({l.at(0).get<std::string>(), l.at(1).get<double>()});
    }
    return r;
  } catch (const std::exception& e) {
    return Error{ErrorCode::Corruption, std::string("malformed record payload: ") + e.what()};
  }
}

}  // namespace

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t next_seq(uint64_t previous, int64_t now_ms) {
  return std::max<uint64_t>(previous + 1, static_cast<uint64_t>(std::max<int64_t>(now_ms, 0)));
}

bool supersedes(const NodeRecord& a, const NodeRecord& b) {
  return a.seq > b.seq || (a.seq == b.seq && a.issued_ms > b.issued_ms);
}

std::string model_key(const store::Cid& model_cid) {
  return hex_encode(model_cid.digest);
}

std::string model_cid_of_key(const std::string& key) {
  auto bytes = hex_decode(key);
  if (!bytes || bytes->size() != store::Digest{}.size()) return {};
  store::Digest d;
  std::copy(bytes->begin(), bytes->end(), d.begin());
  return store::Cid::from_digest(d).to_string();
}

Result<std::vector<uint8_t>> sign_record(const NodeRecord& record, const net::Identity& identity) {
  if (record.peer_id != identity.peer_id())
    return Error{ErrorCode::InvalidArgument,
                 "the record names peer " + record.peer_id + " but is signed by " + identity.peer_id()};
  return seal_envelope(kNodeRecord, to_json(record), identity);
}

Result<NodeRecord> verify_record(std::span<const uint8_t> bytes, int64_t now_ms) {
  auto opened = open_envelope(kNodeRecord, bytes);
  if (!opened) return opened.error();
  auto record = from_json(opened->payload);
  if (!record) return record.error();
  const std::string& key_id = opened->signer_peer_id;
  if (record->peer_id != key_id)
    return Error{ErrorCode::PermissionDenied,
                 "record for peer " + record->peer_id + " is signed by the key of " + key_id};
  const NodeRecord& r = *record;
  if (r.n_layer == 0 || r.block_begin >= r.block_end || r.block_end > r.n_layer)
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": blocks [" + std::to_string(r.block_begin) + ", " +
                 std::to_string(r.block_end) + ") are not a range within " + std::to_string(r.n_layer) + " blocks"};
  if (!std::isfinite(r.block_tps) || r.block_tps < 0 || r.block_tps > 1e9)
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": throughput is not a sane number"};
  if (r.model_id.size() != 64) return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": malformed model id"};
  if (!r.model_cid.empty() && !store::Cid::parse(r.model_cid))
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": malformed model CID"};
  if (r.addresses.empty() || r.addresses.size() > 16)
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": 1 to 16 addresses"};
  for (const auto& a : r.addresses)
    if (a.find('@') != std::string::npos || !net::parse_peer_address(r.peer_id + "@" + a))
      return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": bad address '" + a + "'"};
  for (size_t i = 0; i < r.links.size(); ++i) {
    const LinkRtt& l = r.links[i];
    if (!net::is_peer_id(l.peer_id) || l.peer_id == r.peer_id || !std::isfinite(l.rtt_ms) || l.rtt_ms < 0 ||
        l.rtt_ms > kMaxLinkRttMs)
      return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": link " + std::to_string(i) +
                                              " is not another peer with a round trip in [0, " +
                                              std::to_string(static_cast<int>(kMaxLinkRttMs)) + "] ms"};
    for (size_t k = 0; k < i; ++k)
      if (r.links[k].peer_id == l.peer_id)
        return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": two links to " + l.peer_id};
  }
  if (r.expires_ms <= r.issued_ms || r.expires_ms - r.issued_ms > kMaxRecordTtlMs)
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": validity is not within (0, 1 h]"};
  if (r.expires_ms <= now_ms) return Error{ErrorCode::InvalidArgument, "record of " + r.peer_id + " has expired"};
  if (r.issued_ms > now_ms + kMaxFutureMs)
    return Error{ErrorCode::InvalidArgument, "record of " + r.peer_id + " is issued in the future"};
  return record;
}

}  // namespace omni::swarm
