#include "swarm/record.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/parse.h"
#include "net/peer_address.h"
#include "net/peer_id.h"

namespace omni::swarm {
namespace {

constexpr char kMagic[8] = {'O', 'M', 'N', 'I', 'R', 'E', 'C', '1'};
constexpr char kDomain[] = "omni-swarm-record-v1";  // signed with its terminating NUL
// A record issued this far ahead of the reader's clock is refused (clock skew allowance).
constexpr int64_t kMaxFutureMs = 5 * 60 * 1000;

std::vector<uint8_t> signed_message(std::span<const uint8_t> payload) {
  std::vector<uint8_t> m(sizeof kDomain + payload.size());
  std::memcpy(m.data(), kDomain, sizeof kDomain);
  if (!payload.empty()) std::memcpy(m.data() + sizeof kDomain, payload.data(), payload.size());
  return m;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string to_json(const NodeRecord& r) {
  nlohmann::json j;
  j["peer"] = r.peer_id;
  j["addrs"] = r.addresses;
  j["model"] = r.model_id;
  j["name"] = r.model_name;
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
    return r;
  } catch (const std::exception& e) {
    return Error{ErrorCode::Corruption, std::string("malformed record payload: ") + e.what()};
  }
}

uint32_t read_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
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

std::string model_key(const std::string& header_sha256_raw) {
  return hex_encode({reinterpret_cast<const uint8_t*>(header_sha256_raw.data()), header_sha256_raw.size()});
}

Result<std::vector<uint8_t>> sign_record(const NodeRecord& record, const net::Identity& identity) {
  if (record.peer_id != identity.peer_id())
    return Error{ErrorCode::InvalidArgument,
                 "the record names peer " + record.peer_id + " but is signed by " + identity.peer_id()};
  const std::string payload = to_json(record);
  const auto message = signed_message({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()});
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  uint8_t signature[64];
  size_t sig_len = sizeof signature;
  auto* key = static_cast<EVP_PKEY*>(identity.evp_pkey());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), signature, &sig_len, message.data(), message.size()) != 1 || sig_len != 64)
    return Error{ErrorCode::Internal, "signing the node record failed (OpenSSL)"};
  std::vector<uint8_t> out(kMagic, kMagic + sizeof kMagic);
  const auto n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), payload.begin(), payload.end());
  out.insert(out.end(), identity.public_key().begin(), identity.public_key().end());
  out.insert(out.end(), signature, signature + 64);
  if (out.size() > kMaxRecordBytes)
    return Error{ErrorCode::InvalidArgument, "the node record takes " + std::to_string(out.size()) +
                                                 " bytes, more than the " + std::to_string(kMaxRecordBytes) +
                                                 " allowed (too many addresses?)"};
  return out;
}

Result<NodeRecord> verify_record(std::span<const uint8_t> bytes, int64_t now_ms) {
  constexpr size_t kFixed = sizeof kMagic + 4 + 32 + 64;
  if (bytes.size() > kMaxRecordBytes)
    return Error{ErrorCode::Corruption, "record too large (" + std::to_string(bytes.size()) + " bytes)"};
  if (bytes.size() < kFixed || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return Error{ErrorCode::Corruption, "not an omni node record"};
  const uint32_t n = read_u32(bytes.data() + sizeof kMagic);
  if (bytes.size() != kFixed + n)
    return Error{ErrorCode::Corruption, "record length does not match its payload length"};
  auto payload = bytes.subspan(sizeof kMagic + 4, n);
  std::span<const uint8_t, 32> public_key(bytes.data() + sizeof kMagic + 4 + n, 32);
  const uint8_t* signature = public_key.data() + 32;

  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, public_key.data(), public_key.size()));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!key || !ctx) return Error{ErrorCode::Corruption, "the record's public key is not a valid Ed25519 key"};
  const auto message = signed_message(payload);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestVerify(ctx.get(), signature, 64, message.data(), message.size()) != 1)
    return Error{ErrorCode::PermissionDenied, "bad record signature"};

  auto record = from_json({reinterpret_cast<const char*>(payload.data()), payload.size()});
  if (!record) return record.error();
  const std::string key_id = net::peer_id_from_public_key(public_key);
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
  if (r.addresses.empty() || r.addresses.size() > 16)
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": 1 to 16 addresses"};
  for (const auto& a : r.addresses)
    if (a.find('@') != std::string::npos || !net::parse_peer_address(r.peer_id + "@" + a))
      return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": bad address '" + a + "'"};
  if (r.expires_ms <= r.issued_ms || r.expires_ms - r.issued_ms > kMaxRecordTtlMs)
    return Error{ErrorCode::Corruption, "record of " + r.peer_id + ": validity is not within (0, 1 h]"};
  if (r.expires_ms <= now_ms) return Error{ErrorCode::InvalidArgument, "record of " + r.peer_id + " has expired"};
  if (r.issued_ms > now_ms + kMaxFutureMs)
    return Error{ErrorCode::InvalidArgument, "record of " + r.peer_id + " is issued in the future"};
  return record;
}

}  // namespace omni::swarm
