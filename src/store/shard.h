// Sharding a GGUF model into content-addressed shards, verifying them, and choosing the shards a
// block range needs. (Loading a model back from its shards is sharded_model.h: it needs the engine.)
//
// Shards, each a valid GGUF whose tensor data is byte-identical to the source's (same alignment):
//   embeddings  token_embd, rope_freqs (if any) and any other tensor outside blocks and head; all
//               metadata, tokenizer included
//   block i     every blk.i.* tensor; all metadata except tokenizer.* (so any shard alone is
//               self-describing: architecture and hyper-parameters)
//   head        output_norm and output; with tied embeddings (no output.weight) the head reads
//               token_embd from the embeddings shard, which a head node therefore also loads — it is
//               not duplicated (see ModelInfo.tiedEmbeddings)
// The manifest lists them (proto/manifest.capnp); its CID names the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "gguf/reader.h"
#include "store/blob_store.h"
#include "store/manifest.h"

namespace omni::store {

struct ShardReport {
  Cid model;           // the manifest's CID
  Manifest manifest;
  uint64_t new_bytes = 0;     // bytes added to the store (identical shards are stored once)
  uint32_t reused_shards = 0; // shards that were already present
};

// Splits `gguf_path` into shards in `store`, stores the manifest and pins it and its shards.
// Errors: a chunk size outside 4 KiB to maxReadBytes (4 MiB, what a peer serves in one read:
// InvalidArgument naming the limit), an unreadable GGUF file, a full store.
Result<ShardReport> shard_model(const std::string& gguf_path, BlobStore& store, uint32_t chunk_size = kDefaultChunkSize);

// The manifest shard_model would store for `file` with `chunk_size` (so its CID too), computed by
// hashing each shard as it is produced: nothing is written. This CID is the model's identity
// (net/node_info.h): it covers every byte of every tensor. `what` names the file in errors, which
// are shard_model's (chunk size, a tensor table that cannot be split into blocks).
Result<Manifest> compute_manifest(const gguf::File& file, const std::string& what,
                                  uint32_t chunk_size = kDefaultChunkSize);

// Reads the manifest `model` from the store, checking its bytes against the CID.
Result<Manifest> load_manifest(BlobStore& store, const Cid& model);

// Re-hashes the manifest and every shard (whole and per chunk) against the manifest. The error lists
// every shard that is missing or corrupt. `progress` (if set) is told each shard checked.
Result<void> verify_model(BlobStore& store, const Cid& model,
                          const std::function<void(const ShardEntry&)>& progress = {});

// Which part of a model a node needs: blocks [block_begin, block_end) (the end clamped to the
// model's), the embeddings (to embed tokens) and the head (output_norm and output, or the tied
// token_embd). The same fields as model::LoadRange, which the store does not depend on.
struct ShardRange {
  uint32_t block_begin = 0;
  uint32_t block_end = UINT32_MAX;
  bool embeddings = true;
  bool head = true;
};

// The shards that `range` needs, metadata holder first (the embeddings shard when it is needed).
std::vector<const ShardEntry*> shards_for_range(const Manifest& manifest, const ShardRange& range);

}  // namespace omni::store
