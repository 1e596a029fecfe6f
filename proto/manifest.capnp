# The manifest of a sharded model: what the model is and which content-addressed shards hold it.
#
# Encoded with Cap'n Proto's canonical encoding (a single segment, no padding, no far pointers,
# fields in order), so the same model always gives the same bytes and hence the same CID. The CID of
# these bytes (CIDv1, raw codec 0x55, sha2-256) names the model. See docs/design.md,
# "Content-addressed shards".
@0x98a4ca96496417ca;

$import "/capnp/c++.capnp".namespace("omni::store::proto");

struct Manifest {
  magic @0 :Text;           # always "omninode.manifest": tells a manifest from any other raw blob
  version @1 :UInt32;       # 1
  chunkSize @2 :UInt32;     # bytes per chunk of every shard (the last chunk of a shard may be shorter)
  model @3 :ModelInfo;
  shards @4 :List(Shard);   # embeddings first, then blocks in order, then head
}

struct ModelInfo {
  architecture @0 :Text;    # general.architecture
  name @1 :Text;            # general.name, or empty
  nLayer @2 :UInt32;
  nEmbd @3 :UInt32;
  nVocab @4 :UInt32;        # rows of token_embd
  nTensors @5 :UInt32;      # tensors of the source file (all appear in exactly one shard)
  sourceSize @6 :UInt64;    # bytes of the source GGUF
  fileType @7 :Text;        # general.file_type as a number, or empty
  tiedEmbeddings @8 :Bool;  # no output.weight: the head reads token_embd from the embeddings shard
  sourceHeaderSha256 @9 :Data;
  # sha2-256 of the source GGUF's bytes before its tensor data (32 bytes): with sourceSize it lets a
  # node serving from shards present the same model identity (node.capnp ModelIdentity) as a node
  # serving the source file. Empty in manifests written before it existed.
}

struct Shard {
  role @0 :Role;
  block @1 :UInt32;         # the block index, for role == block
  cid @2 :Data;             # binary CIDv1 (raw, sha2-256) of the shard's bytes
  size @3 :UInt64;          # bytes
  chunkHashes @4 :Data;     # sha2-256 of each chunk, 32 bytes each, ceil(size / chunkSize) of them
  nTensors @5 :UInt32;

  enum Role {
    embeddings @0;          # token_embd, rope_freqs, all metadata (tokenizer included)
    block @1;               # blk.N.*
    head @2;                # output_norm, output
  }
}
