// Manifest: the description of a sharded model (proto/manifest.capnp) as plain C++ values, with its
// canonical Cap'n Proto encoding. The manifest's CID (raw codec, sha2-256 of encode()) names the model.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/cid.h"

namespace omni::store {

inline constexpr uint32_t kDefaultChunkSize = 1u << 20;  // 1 MiB
inline constexpr const char* kManifestMagic = "omninode.manifest";
inline constexpr uint64_t kMaxManifestBytes = 64ull << 20;

enum class ShardRole : uint8_t { Embeddings = 0, Block = 1, Head = 2 };

struct ShardEntry {
  ShardRole role = ShardRole::Block;
  uint32_t block = 0;
  Cid cid;
  uint64_t size = 0;
  std::vector<Digest> chunk_hashes;  // one per chunk of chunk_size bytes
  uint32_t n_tensors = 0;

  std::string label() const;  // "embeddings", "block 3", "head"
};

struct ModelInfo {
  std::string architecture;
  std::string name;
  uint32_t n_layer = 0;
  uint32_t n_embd = 0;
  uint32_t n_vocab = 0;
  uint32_t n_tensors = 0;
  uint64_t source_size = 0;
  std::string file_type;
  bool tied_embeddings = false;
  std::vector<uint8_t> source_header_sha256;  // sha2-256 of the source's bytes before the tensor data
};

struct Manifest {
  uint32_t version = 1;
  uint32_t chunk_size = kDefaultChunkSize;
  ModelInfo model;
  std::vector<ShardEntry> shards;

  // Canonical Cap'n Proto bytes: equal manifests give equal bytes.
  std::vector<uint8_t> encode() const;
  Cid cid() const { return Cid::of(encode()); }
  // Parses and validates (magic, version, chunk table sizes, roles, one shard per block).
  static Result<Manifest> decode(std::span<const uint8_t> bytes);

  const ShardEntry* embeddings() const;
  const ShardEntry* head() const;
  const ShardEntry* block(uint32_t i) const;
};

// Number of chunks of a blob of `size` bytes.
inline uint64_t chunk_count(uint64_t size, uint32_t chunk_size) { return (size + chunk_size - 1) / chunk_size; }

}  // namespace omni::store
