// ProviderRecord: a node's signed statement that it serves blobs of a sharded model (src/store)
// over the node transport: which model (the manifest's CID), which of the manifest's shards its
// store holds, and where it listens. A client or a joining node that knows only a model's CID finds
// its sources here instead of in --peers.
//
// Trust is as for node records (record.h): the signature must verify under the key the envelope
// carries, and that key's peer id must be the record's; fetching then pins that id. A provider can
// still lie about what it holds; that costs the fetcher time (it drops the peer), never
// correctness: every byte is checked against the manifest, which is checked against the CID.
//
// The record lives under the directory key of the model's CID (Directory::provide), with a
// validity of a TTL, refreshed like a node record (Announcer).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/identity.h"
#include "store/blob_store.h"
#include "store/manifest.h"
#include "swarm/directory.h"

namespace omni::swarm {

inline constexpr size_t kMaxProviderRecordBytes = 4096;
inline constexpr uint32_t kMaxProviderShards = 4096;  // the shard bitmap's hex then takes 1 KiB

struct ProviderRecord {
  std::string peer_id;
  std::vector<std::string> addresses;  // as NodeRecord::addresses: "host:port" or "relay:host:port"
  std::string model_cid;               // text form of the manifest's CID
  std::vector<bool> shards;            // shards[i]: the store holds manifest.shards[i]
  int64_t issued_ms = 0, expires_ms = 0;  // Unix time, milliseconds
  uint64_t seq = 0;                       // the highest wins (next_seq)

  bool holds(size_t shard_index) const { return shard_index < shards.size() && shards[shard_index]; }
};

// Which of `manifest`'s shards `store` holds (the manifest itself is taken as held).
std::vector<bool> shards_held(const store::Manifest& manifest, const store::BlobStore& store);

// Serializes and signs `record` with `identity` (whose peer id must be record.peer_id).
Result<std::vector<uint8_t>> sign_provider_record(const ProviderRecord& record, const net::Identity& identity);

// Checks the envelope, the signature, the peer id and the fields; `now_ms` rejects expired records
// and ones issued too far in the future. Errors say which check failed.
Result<ProviderRecord> verify_provider_record(std::span<const uint8_t> bytes, int64_t now_ms);

struct ProviderLookup {
  std::vector<ProviderRecord> records;  // verified, unexpired, for this model, newest per peer, by peer id
  size_t rejected = 0;
  std::vector<std::string> reasons;     // the first few
};

// Reads and verifies the provider records of `model_cid`.
Result<ProviderLookup> lookup_providers(Directory& directory, const std::string& model_cid,
                                        int64_t now_ms = unix_now_ms());

}  // namespace omni::swarm
