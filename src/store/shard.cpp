#include "store/shard.h"

#include <unistd.h>

#include <algorithm>

#include "gguf/reader.h"
#include "gguf/writer.h"
#include "store/hash.h"
#include "store.capnp.h"

namespace omni::store {
namespace {

struct Plan {
  ShardRole role;
  uint32_t block = 0;
  std::vector<size_t> tensors;  // indices into the source's tensor table, in source order
};

// "blk.12.attn_q.weight" -> 12; -1 if not a block tensor.
int64_t block_of(const std::string& name) {
  if (!name.starts_with("blk.")) return -1;
  size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4) return -1;
  int64_t n = 0;
  for (size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9' || n > 1'000'000) return -1;
    n = n * 10 + (name[i] - '0');
  }
  return n;
}

Result<uint32_t> meta_u32(const gguf::Metadata& md, const std::string& key) {
  auto v = md.get_uint(key);
  if (!v) return v.error();
  if (*v > UINT32_MAX) return Error{ErrorCode::Corruption, key + " is too large"};
  return static_cast<uint32_t>(*v);
}

}  // namespace

namespace {

Result<void> check_chunk_size(uint32_t chunk_size) {
  constexpr uint32_t kMaxChunk = proto::MAX_READ_BYTES;
  if (chunk_size >= 4096 && chunk_size <= kMaxChunk) return {};
  return Error{ErrorCode::InvalidArgument,
               "chunk size " + std::to_string(chunk_size / 1024) + " KiB is outside 4 to " +
                   std::to_string(kMaxChunk / 1024) + " KiB: a peer serves at most " +
                   std::to_string(kMaxChunk / 1024) +
                   " KiB in one read (maxReadBytes, proto/store.capnp), and peers of earlier versions ask for a "
                   "chunk in one read, so they could not fetch this model; use --chunk-kib " +
                   std::to_string(kMaxChunk / 1024) + " or less"};
}

// The manifest's model description (its shards still empty) and the plan of its shards:
// embeddings, blocks 0..n-1, head — the manifest's order.
Result<std::vector<Plan>> plan_shards(const gguf::File& file, const std::string& what, uint32_t chunk_size,
                                      Manifest& manifest) {
  const gguf::Metadata& md = file.metadata();
  manifest.chunk_size = chunk_size;
  ModelInfo& info = manifest.model;
  auto arch = md.get_string("general.architecture");
  if (!arch) return arch.error().with_context(what);
  info.architecture = *arch;
  if (auto name = md.get_string("general.name")) info.name = *name;
  if (auto ft = md.get_uint("general.file_type")) info.file_type = std::to_string(*ft);
  auto n_layer = meta_u32(md, info.architecture + ".block_count");
  if (!n_layer) return n_layer.error().with_context(what);
  info.n_layer = *n_layer;
  if (auto n_embd = meta_u32(md, info.architecture + ".embedding_length")) info.n_embd = *n_embd;
  info.n_tensors = static_cast<uint32_t>(file.tensors().size());
  info.source_size = file.bytes().size();
  {
    const Digest header = sha256(file.bytes().first(std::min<uint64_t>(file.data_offset(), file.bytes().size())));
    info.source_header_sha256.assign(header.begin(), header.end());
  }
  if (const auto* embd = file.find_tensor("token_embd.weight"); embd && embd->shape.size() == 2)
    info.n_vocab = static_cast<uint32_t>(embd->shape[1]);
  info.tied_embeddings = file.find_tensor("output.weight") == nullptr;

  std::vector<Plan> plans(info.n_layer + 2);
  plans[0].role = ShardRole::Embeddings;
  for (uint32_t i = 0; i < info.n_layer; ++i) plans[1 + i] = {ShardRole::Block, i, {}};
  plans.back().role = ShardRole::Head;
  for (size_t t = 0; t < file.tensors().size(); ++t) {
    const std::string& name = file.tensors()[t].name;
    int64_t blk = block_of(name);
    if (blk >= static_cast<int64_t>(info.n_layer))
      return Error{ErrorCode::Corruption, what + ": tensor '" + name + "' belongs to block " + std::to_string(blk) +
                                              " but the model has " + std::to_string(info.n_layer) + " blocks"};
    if (blk >= 0) plans[1 + static_cast<size_t>(blk)].tensors.push_back(t);
    else if (name == "output_norm.weight" || name == "output.weight" || name.starts_with("output_norm.") || name.starts_with("output."))
      plans.back().tensors.push_back(t);
    else
      plans[0].tensors.push_back(t);
  }
  for (const Plan& p : plans)
    if (p.tensors.empty() && p.role == ShardRole::Block)
      return Error{ErrorCode::Corruption, what + ": block " + std::to_string(p.block) + " has no tensors"};
  return plans;
}

// The shard `p` as a GGUF writer and the source of its tensor data (views into `file`).
Result<gguf::Writer> shard_writer(const gguf::File& file, const Plan& p, const std::string& what) {
  gguf::Writer w(file.version() >= 3 ? 3 : file.version());
  for (const auto& e : file.metadata().entries())
    if (p.role == ShardRole::Embeddings || !e.key.starts_with("tokenizer.")) w.metadata().set(e.key, e.value);
  for (size_t t : p.tensors) {
    const gguf::TensorInfo& ti = file.tensors()[t];
    auto idx = w.add_tensor({ti.name, ti.type, ti.shape});
    if (!idx) return idx.error().with_context(what);
  }
  return w;
}

gguf::TensorSource shard_source(const gguf::File& file, const Plan& p) {
  return [&file, &p](size_t index, gguf::TensorSink& sink) -> Result<void> {
    return sink.write(file.tensor_data(file.tensors()[p.tensors[index]]));
  };
}

ShardEntry entry_of(const Plan& p) {
  ShardEntry entry;
  entry.role = p.role;
  entry.block = p.block;
  entry.n_tensors = static_cast<uint32_t>(p.tensors.size());
  return entry;
}

}  // namespace

Result<ShardReport> shard_model(const std::string& gguf_path, BlobStore& store, uint32_t chunk_size) {
  if (auto r = check_chunk_size(chunk_size); !r) return r.error();
  auto opened = gguf::File::open(gguf_path);
  if (!opened) return opened.error();
  const gguf::File& file = *opened;
  Manifest manifest;
  auto plans = plan_shards(file, gguf_path, chunk_size, manifest);
  if (!plans) return plans.error();

  ShardReport report;
  for (const Plan& p : *plans) {
    auto w = shard_writer(file, p, gguf_path);
    if (!w) return w.error();
    ShardEntry entry = entry_of(p);
    std::string tmp = store.temp_path("shard.gguf");
    if (auto r = w->write_file(tmp, shard_source(file, p)); !r) {
      ::unlink(tmp.c_str());
      return r.error().with_context("writing the " + entry.label() + " shard");
    }
    auto imported = store.import_file(tmp, chunk_size);
    if (!imported) return imported.error().with_context("storing the " + entry.label() + " shard");
    entry.cid = imported->cid;
    entry.size = imported->size;
    entry.chunk_hashes = std::move(imported->chunk_hashes);
    if (imported->existed) ++report.reused_shards;
    else report.new_bytes += entry.size;
    if (auto r = store.pin(entry.cid); !r) return r.error();
    manifest.shards.push_back(std::move(entry));
  }
  std::vector<uint8_t> bytes = manifest.encode();
  auto cid = store.put(bytes);
  if (!cid) return cid.error().with_context("storing the manifest");
  if (auto r = store.pin(*cid); !r) return r.error();
  report.model = *cid;
  report.manifest = std::move(manifest);
  return report;
}

Result<Manifest> compute_manifest(const gguf::File& file, const std::string& what, uint32_t chunk_size) {
  if (auto r = check_chunk_size(chunk_size); !r) return r.error();
  Manifest manifest;
  auto plans = plan_shards(file, what, chunk_size, manifest);
  if (!plans) return plans.error();
  for (const Plan& p : *plans) {
    auto w = shard_writer(file, p, what);
    if (!w) return w.error();
    ShardEntry entry = entry_of(p);
    // The blob's hash and its chunk table, as BlobStore::import_file computes them from the file.
    Sha256 whole, chunk;
    uint64_t in_chunk = 0;
    auto hash = [&](std::span<const uint8_t> data) -> Result<void> {
      whole.update(data);
      entry.size += data.size();
      while (!data.empty()) {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(data.size(), chunk_size - in_chunk));
        chunk.update(data.first(take));
        in_chunk += take;
        data = data.subspan(take);
        if (in_chunk == chunk_size) {
          entry.chunk_hashes.push_back(chunk.finish());
          in_chunk = 0;
        }
      }
      return {};
    };
    if (auto r = w->write_stream(hash, shard_source(file, p)); !r)
      return r.error().with_context("hashing the " + entry.label() + " shard");
    if (in_chunk > 0) entry.chunk_hashes.push_back(chunk.finish());
    entry.cid = Cid::from_digest(whole.finish());
    manifest.shards.push_back(std::move(entry));
  }
  return manifest;
}

Result<Manifest> load_manifest(BlobStore& store, const Cid& model) {
  auto bytes = store.read_all(model, kMaxManifestBytes);
  if (!bytes) return bytes.error();
  if (Cid::of(*bytes) != model)
    return Error{ErrorCode::Corruption, "manifest " + model.to_string() + ": stored bytes do not match the CID"};
  auto m = Manifest::decode(*bytes);
  if (!m) return m.error().with_context(model.to_string());
  return m;
}

Result<void> verify_model(BlobStore& store, const Cid& model, const std::function<void(const ShardEntry&)>& progress) {
  auto manifest = load_manifest(store, model);
  if (!manifest) return manifest.error();
  std::string problems;
  for (const ShardEntry& s : manifest->shards) {
    auto h = store.hash_blob(s.cid, manifest->chunk_size);
    std::string problem;
    if (!h) problem = h.error().message;
    else if (h->cid != s.cid) problem = "content does not match its CID";
    else if (h->size != s.size) problem = "size " + std::to_string(h->size) + " differs from the manifest's " + std::to_string(s.size);
    else if (h->chunk_hashes != s.chunk_hashes) problem = "chunk hashes differ from the manifest's";
    if (!problem.empty()) problems += "\n  " + s.label() + " (" + s.cid.to_string() + "): " + problem;
    if (progress) progress(s);
  }
  if (!problems.empty())
    return Error{ErrorCode::Corruption, "model " + model.to_string() + " failed verification:" + problems};
  return {};
}

std::vector<const ShardEntry*> shards_for_range(const Manifest& m, const ShardRange& range) {
  std::vector<const ShardEntry*> out;
  const uint32_t end = std::min(range.block_end, m.model.n_layer);
  // ModelWeights binds token_embd for embeddings and for the head (tied, or to know n_vocab).
  if (range.embeddings || range.head)
    if (const ShardEntry* e = m.embeddings()) out.push_back(e);
  for (uint32_t i = range.block_begin; i < end; ++i)
    if (const ShardEntry* b = m.block(i)) out.push_back(b);
  if (range.head)
    if (const ShardEntry* h = m.head()) out.push_back(h);
  return out;
}

}  // namespace omni::store
