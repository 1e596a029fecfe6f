#include "swarm/provider_record.h"

#include <map>
#include <nlohmann/json.hpp>

#include "net/peer_address.h"
#include "store/cid.h"
#include "swarm/signed_envelope.h"

namespace omni::swarm {
namespace {

constexpr EnvelopeKind kProviderRecord{"OMNIPRV1", "omni-swarm-provider-v1", kMaxProviderRecordBytes,
                                       "provider record"};
constexpr int64_t kMaxFutureMs = 5 * 60 * 1000;  // clock skew allowance, as for node records

// Bit i of the bitmap is shard i; hex digits, four shards each, lowest shard in the lowest bit.
std::string bitmap_hex(const std::vector<bool>& bits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::vector<uint8_t> nibbles((bits.size() + 3) / 4, 0);
  for (size_t i = 0; i < bits.size(); ++i)
    if (bits[i]) nibbles[i / 4] |= static_cast<uint8_t>(1 << (i % 4));
  std::string out;
  for (uint8_t v : nibbles) out.push_back(kDigits[v]);
  return out;
}

Result<std::vector<bool>> bitmap_from_hex(const std::string& hex, uint32_t n) {
  if (n > kMaxProviderShards) return Error{ErrorCode::Corruption, "more than " + std::to_string(kMaxProviderShards) + " shards"};
  if (hex.size() != (n + 3) / 4) return Error{ErrorCode::Corruption, "shard bitmap of the wrong length"};
  std::vector<bool> bits(n);
  for (size_t d = 0; d < hex.size(); ++d) {
    const char c = hex[d];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return Error{ErrorCode::Corruption, "shard bitmap is not lower-case hex"};
    for (int b = 0; b < 4; ++b) {
      const size_t i = d * 4 + b;
      if (v >> b & 1) {
        if (i >= n) return Error{ErrorCode::Corruption, "shard bitmap names shards past its count"};
        bits[i] = true;
      }
    }
  }
  return bits;
}

std::string to_json(const ProviderRecord& r) {
  nlohmann::json j;
  j["peer"] = r.peer_id;
  j["addrs"] = r.addresses;
  j["model"] = r.model_cid;
  j["n"] = r.shards.size();
  j["shards"] = bitmap_hex(r.shards);
  j["issued"] = r.issued_ms;
  j["expires"] = r.expires_ms;
  j["seq"] = r.seq;
  return j.dump();
}

Result<ProviderRecord> from_json(std::string_view text) {
  try {
    auto j = nlohmann::json::parse(text);
    ProviderRecord r;
    r.peer_id = j.at("peer").get<std::string>();
    r.addresses = j.at("addrs").get<std::vector<std::string>>();
    r.model_cid = j.at("model").get<std::string>();
    auto bits = bitmap_from_hex(j.at("shards").get<std::string>(), j.at("n").get<uint32_t>());
    if (!bits) return bits.error().with_context("malformed provider record payload");
    r.shards = std::move(*bits);
    r.issued_ms = j.at("issued").get<int64_t>();
    r.expires_ms = j.at("expires").get<int64_t>();
    r.seq = j.at("seq").get<uint64_t>();
    return r;
  } catch (const std::exception& e) {
    return Error{ErrorCode::Corruption, std::string("malformed provider record payload: ") + e.what()};
  }
}

}  // namespace

std::vector<bool> shards_held(const store::Manifest& manifest, const store::BlobStore& store) {
  std::vector<bool> held(manifest.shards.size());
  for (size_t i = 0; i < held.size(); ++i) held[i] = store.has(manifest.shards[i].cid);
  return held;
}

Result<std::vector<uint8_t>> sign_provider_record(const ProviderRecord& record, const net::Identity& identity) {
  if (record.peer_id != identity.peer_id())
    return Error{ErrorCode::InvalidArgument,
                 "the provider record names peer " + record.peer_id + " but is signed by " + identity.peer_id()};
  if (record.shards.size() > kMaxProviderShards)
    return Error{ErrorCode::InvalidArgument, "a provider record lists at most " +
                                                 std::to_string(kMaxProviderShards) + " shards"};
  return seal_envelope(kProviderRecord, to_json(record), identity);
}

Result<ProviderRecord> verify_provider_record(std::span<const uint8_t> bytes, int64_t now_ms) {
  auto opened = open_envelope(kProviderRecord, bytes);
  if (!opened) return opened.error();
  auto record = from_json(opened->payload);
  if (!record) return record.error();
  const ProviderRecord& r = *record;
  if (r.peer_id != opened->signer_peer_id)
    return Error{ErrorCode::PermissionDenied,
                 "provider record for peer " + r.peer_id + " is signed by the key of " + opened->signer_peer_id};
  const std::string of = "provider record of " + r.peer_id;
  if (!store::Cid::parse(r.model_cid)) return Error{ErrorCode::Corruption, of + ": malformed model CID"};
  if (r.addresses.empty() || r.addresses.size() > 16) return Error{ErrorCode::Corruption, of + ": 1 to 16 addresses"};
  for (const auto& a : r.addresses)
    if (a.find('@') != std::string::npos || !net::parse_peer_address(r.peer_id + "@" + a))
      return Error{ErrorCode::Corruption, of + ": bad address '" + a + "'"};
  if (r.expires_ms <= r.issued_ms || r.expires_ms - r.issued_ms > kMaxRecordTtlMs)
    return Error{ErrorCode::Corruption, of + ": validity is not within (0, 1 h]"};
  if (r.expires_ms <= now_ms) return Error{ErrorCode::InvalidArgument, of + " has expired"};
  if (r.issued_ms > now_ms + kMaxFutureMs) return Error{ErrorCode::InvalidArgument, of + " is issued in the future"};
  return record;
}

Result<ProviderLookup> lookup_providers(Directory& directory, const std::string& model_cid, int64_t now_ms) {
  auto values = directory.fetch_providers(model_cid);
  if (!values) return values.error();
  ProviderLookup out;
  std::map<std::string, ProviderRecord> newest;
  for (const auto& v : *values) {
    auto r = verify_provider_record(v, now_ms);
    if (r && r->model_cid != model_cid)
      r = Error{ErrorCode::InvalidArgument, "provider record of " + r->peer_id + " is for another model"};
    if (!r) {
      ++out.rejected;
      if (out.reasons.size() < 8) out.reasons.push_back(r.error().message);
      continue;
    }
    auto it = newest.find(r->peer_id);
    if (it == newest.end() || r->seq > it->second.seq ||
        (r->seq == it->second.seq && r->issued_ms > it->second.issued_ms))
      newest[r->peer_id] = std::move(*r);
  }
  for (auto& [id, r] : newest) out.records.push_back(std::move(r));
  return out;
}

}  // namespace omni::swarm
