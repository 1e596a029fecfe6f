# The blob transfer protocol: a peer serves byte ranges of the content-addressed blobs it holds.
#
# A client fetching a shard keeps several `read` calls in flight per peer (a sliding window), since
# one request per round trip cannot fill a long fat link: with bandwidth B, round-trip time R and
# chunk size C, at least ceil(B * R / C) + 1 requests must be outstanding. Each returned chunk is
# checked against the chunk hash listed in the (CID-verified) manifest before it is written, so a
# peer can waste a client's time but never corrupt its store; a peer whose bytes do not match is
# dropped. Because chunks are verified and recorded one by one, a fetch can stop at any point and
# resume later without fetching verified chunks again. See docs/design.md.
@0x93cc72afab89d2c6;

$import "/capnp/c++.capnp".namespace("omni::store::proto");

interface BlobStore {
  # The blob's size if this peer holds it complete; has = false otherwise.
  stat @0 (cid :Data) -> (has :Bool, size :UInt64);

  # Bytes [offset, offset + length) of a complete blob. length is at most maxReadBytes. Errors
  # (failed exception): an unknown blob, a range past its end, a length over the limit.
  read @1 (cid :Data, offset :UInt64, length :UInt32) -> (data :Data);
}

const maxReadBytes :UInt32 = 4194304;  # 4 MiB
