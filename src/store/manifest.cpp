#include "store/manifest.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <set>

#include "manifest.capnp.h"

namespace omni::store {

std::string ShardEntry::label() const {
  switch (role) {
    case ShardRole::Embeddings: return "embeddings";
    case ShardRole::Head: return "head";
    case ShardRole::Block: break;
  }
  return "block " + std::to_string(block);
}

const ShardEntry* Manifest::embeddings() const {
  for (const auto& s : shards)
    if (s.role == ShardRole::Embeddings) return &s;
  return nullptr;
}
const ShardEntry* Manifest::head() const {
  for (const auto& s : shards)
    if (s.role == ShardRole::Head) return &s;
  return nullptr;
}
const ShardEntry* Manifest::block(uint32_t i) const {
  for (const auto& s : shards)
    if (s.role == ShardRole::Block && s.block == i) return &s;
  return nullptr;
}

std::vector<uint8_t> Manifest::encode() const {
  capnp::MallocMessageBuilder message;
  auto m = message.initRoot<proto::Manifest>();
  m.setMagic(kManifestMagic);
  m.setVersion(version);
  m.setChunkSize(chunk_size);
  auto info = m.initModel();
  info.setArchitecture(model.architecture);
  info.setName(model.name);
  info.setNLayer(model.n_layer);
  info.setNEmbd(model.n_embd);
  info.setNVocab(model.n_vocab);
  info.setNTensors(model.n_tensors);
  info.setSourceSize(model.source_size);
  info.setFileType(model.file_type);
  info.setTiedEmbeddings(model.tied_embeddings);
  if (!model.source_header_sha256.empty())
    info.setSourceHeaderSha256(kj::arrayPtr(model.source_header_sha256.data(), model.source_header_sha256.size()));
  auto list = m.initShards(static_cast<unsigned>(shards.size()));
  for (size_t i = 0; i < shards.size(); ++i) {
    const ShardEntry& s = shards[i];
    auto out = list[static_cast<unsigned>(i)];
    out.setRole(static_cast<proto::Shard::Role>(s.role));
    out.setBlock(s.block);
    auto cid = s.cid.to_binary();
    out.setCid(kj::arrayPtr(cid.data(), cid.size()));
    out.setSize(s.size);
    auto hashes = out.initChunkHashes(static_cast<unsigned>(s.chunk_hashes.size() * 32));
    for (size_t c = 0; c < s.chunk_hashes.size(); ++c) std::memcpy(hashes.begin() + c * 32, s.chunk_hashes[c].data(), 32);
    out.setNTensors(s.n_tensors);
  }
  // Canonical form: one segment, pre-order layout, no trailing zeros — independent of build order.
  kj::Array<capnp::word> words = capnp::AnyStruct::Reader(m.asReader()).canonicalize();
  auto bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

namespace {

Result<Manifest> decode_unchecked(std::span<const uint8_t> bytes) {
  if (bytes.size() % sizeof(capnp::word) != 0 || bytes.empty())
    return Error{ErrorCode::Corruption,
                 "manifest: " + std::to_string(bytes.size()) + " bytes is not a whole number of words"};
  // Copy into word-aligned storage: the input span has no alignment guarantee.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords = bytes.size() / sizeof(capnp::word) * 2 + 1024;
  // Canonical bytes are a flat single segment without a segment table.
  kj::ArrayPtr<const capnp::word> segment = words.asPtr();
  capnp::SegmentArrayMessageReader reader(kj::arrayPtr(&segment, 1), options);
  if (!reader.isCanonical()) return Error{ErrorCode::Corruption, "manifest: not canonically encoded"};
  auto m = reader.getRoot<proto::Manifest>();
  if (m.getMagic() != kj::StringPtr(kManifestMagic))
    return Error{ErrorCode::Corruption, "manifest: wrong magic (not an OmniNode manifest)"};
  Manifest out;
  out.version = m.getVersion();
  if (out.version != 1)
    return Error{ErrorCode::InvalidArgument, "manifest: unsupported version " + std::to_string(out.version)};
  out.chunk_size = m.getChunkSize();
  if (out.chunk_size < 4096 || out.chunk_size > (64u << 20))
    return Error{ErrorCode::Corruption,
                 "manifest: chunk size " + std::to_string(out.chunk_size) + " is outside [4 KiB, 64 MiB]"};
  auto info = m.getModel();
  out.model.architecture = info.getArchitecture().cStr();
  out.model.name = info.getName().cStr();
  out.model.n_layer = info.getNLayer();
  out.model.n_embd = info.getNEmbd();
  out.model.n_vocab = info.getNVocab();
  out.model.n_tensors = info.getNTensors();
  out.model.source_size = info.getSourceSize();
  out.model.file_type = info.getFileType().cStr();
  out.model.tied_embeddings = info.getTiedEmbeddings();
  auto header = info.getSourceHeaderSha256();
  if (header.size() != 0 && header.size() != 32)
    return Error{ErrorCode::Corruption, "manifest: sourceHeaderSha256 is not 32 bytes"};
  out.model.source_header_sha256.assign(header.begin(), header.end());
  std::set<uint32_t> blocks;
  int n_embeddings = 0, n_head = 0;
  for (auto s : m.getShards()) {
    ShardEntry e;
    auto role = s.getRole();
    if (role != proto::Shard::Role::EMBEDDINGS && role != proto::Shard::Role::BLOCK && role != proto::Shard::Role::HEAD)
      return Error{ErrorCode::Corruption, "manifest: unknown shard role " + std::to_string(static_cast<int>(role))};
    e.role = static_cast<ShardRole>(role);
    e.block = s.getBlock();
    auto cid_bytes = s.getCid();
    auto cid = Cid::from_binary({cid_bytes.begin(), cid_bytes.size()});
    if (!cid) return Error{ErrorCode::Corruption, "manifest: shard " + e.label() + ": " + cid.error().message};
    e.cid = *cid;
    e.size = s.getSize();
    e.n_tensors = s.getNTensors();
    auto hashes = s.getChunkHashes();
    if (hashes.size() != chunk_count(e.size, out.chunk_size) * 32)
      return Error{ErrorCode::Corruption, "manifest: shard " + e.label() + " lists " +
                                              std::to_string(hashes.size() / 32) + " chunk hashes for " +
                                              std::to_string(chunk_count(e.size, out.chunk_size)) + " chunks"};
    e.chunk_hashes.resize(hashes.size() / 32);
    for (size_t c = 0; c < e.chunk_hashes.size(); ++c) std::memcpy(e.chunk_hashes[c].data(), hashes.begin() + c * 32, 32);
    if (e.role == ShardRole::Embeddings) ++n_embeddings;
    if (e.role == ShardRole::Head) ++n_head;
    if (e.role == ShardRole::Block) {
      if (e.block >= out.model.n_layer || !blocks.insert(e.block).second)
        return Error{ErrorCode::Corruption, "manifest: block shard " + std::to_string(e.block) +
                                                " is duplicated or beyond n_layer " +
                                                std::to_string(out.model.n_layer)};
    }
    out.shards.push_back(std::move(e));
  }
  if (n_embeddings != 1 || n_head != 1 || blocks.size() != out.model.n_layer)
    return Error{ErrorCode::Corruption, "manifest: expected one embeddings shard, one head shard and " +
                                            std::to_string(out.model.n_layer) + " block shards"};
  return out;
}

}  // namespace

Result<Manifest> Manifest::decode(std::span<const uint8_t> bytes) {
  if (bytes.size() > kMaxManifestBytes) return Error{ErrorCode::Corruption, "manifest: too large"};
  try {
    return decode_unchecked(bytes);
  } catch (const kj::Exception& e) {
    return Error{ErrorCode::Corruption, std::string("manifest: malformed: ") + e.getDescription().cStr()};
  }
}

}  // namespace omni::store
