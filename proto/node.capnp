# OmniNode node protocol: a node serves a contiguous range [blockBegin, blockEnd) of the transformer
# blocks of one GGUF model; clients open inference sessions on it and stream hidden states through.
#
# Transport: Cap'n Proto RPC (two-party) over TLS 1.3; both sides present a self-signed certificate
# made with their Ed25519 identity key, and the peer id is derived from that key (docs/protocol.md).
# The bootstrap capability of a connection is a Gate. Everything in this file is versioned by
# `protocolVersion`; `Gate` and `Hello` must never change incompatibly, so that any two versions
# can at least tell each other why they cannot talk.
#
# Errors are Cap'n Proto exceptions whose description is a human-readable sentence that names the
# field or limit at fault. Types used: `failed` (bad request: the connection stays usable),
# `overloaded` (node full: try another node or later), `disconnected` (the peer or a downstream
# node went away).

@0x9a082cb56863993c;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("omni::proto");

const protocolVersion :UInt32 = 2;
# Bumped on any incompatible change to anything below Gate/Hello. 2: ModelIdentity is the manifest
# CID (content), no longer a hash of the GGUF header.

struct Hello {
  # What a connecting peer speaks; sent once, first, on every connection.
  protocolVersion @0 :UInt32;
  # The caller's protocolVersion; the node refuses any other version.
  requiredFeatures @1 :List(Text);
  # Features the caller will use; the node refuses if it lacks one. Known features:
  # "hidden-f32", "hidden-f16", "hidden-q8" (hidden-state encodings), "chain" (server-to-server
  # forwarding through `OpenParams.downstream`), "rollback", "explicit-position", "blobs" (the node
  # serves content-addressed blobs through `Gate.openBlobs`), "ring" (`Node.attachSink`,
  # `OpenParams.ringToken`: the last node of a chain delivers outputs straight to the client; a ring
  # client and every node forwarding a ring require it, so nodes without it refuse at `hello`).
}

interface Gate {
  # The bootstrap capability. Nothing but `hello` is reachable before the handshake succeeds.
  hello @0 (hello :Hello) -> (node :Node, info :NodeInfo);
  # Version/feature handshake. Fails (type `failed`) with a sentence naming both versions or the
  # missing feature. On success returns the Node capability and the node's description. (A peer
  # not on the node's --allow-peers list never gets here: right after TLS the node sends it an
  # Abort naming its peer id and closes the connection.)
  openBlobs @1 (hello :Hello) -> (blobs :Capability);
  # The same checks as `hello` (version, features), then the node's blob store: a
  # `BlobStore` of proto/store.capnp (typed `Capability` here so that this file does not import the
  # store schema). Nodes without the "blobs" feature fail (`failed`, or `unimplemented` before it
  # existed). Blob transfer needs no model and no session: a fetching peer calls this instead of
  # `hello` on its own connection. Added in protocol 1 (additive; older nodes lack it).
}

struct ModelIdentity {
  # Which model a node serves; two nodes can be chained only if these are equal.
  name @0 :Text;           # GGUF general.name (may be empty)
  architecture @1 :Text;   # GGUF general.architecture, e.g. "llama"
  nLayer @2 :UInt32;       # number of transformer blocks of the whole model
  nEmbd @3 :UInt32;        # hidden size: values per token in a hidden state
  nVocab @4 :UInt32;       # vocabulary size (rows of token_embd)
  fileSize @5 :UInt64;     # size in bytes of the GGUF file
  manifestCid @6 :Data;    # the model's identity: binary CIDv1 (raw, sha2-256; 36 bytes) of its
                           # manifest as `omni shard` computes it with 1 MiB chunks, which hashes
                           # every byte of every shard. Two nodes hold the same weights only if
                           # these are equal. Protocol 2; protocol 1 sent headerSha256 here (a hash
                           # of the header only, which did not see the weights).
}

struct NodeInfo {
  # A node's description and current capacity, as of the call.
  peerId @0 :Text;               # the node's peer id (matches its TLS certificate key)
  protocolVersion @1 :UInt32;    # the protocolVersion it speaks
  features @2 :List(Text);       # the features it supports (see Hello.requiredFeatures)
  model @3 :ModelIdentity;       # the model whose blocks it serves
  blockBegin @4 :UInt32;         # first block served
  blockEnd @5 :UInt32;           # one past the last block served
  maxSessions @6 :UInt32;        # sessions it accepts at once
  activeSessions @7 :UInt32;     # sessions open now
  maxLength @8 :UInt32;          # largest maxLength (positions) one session may ask for
  maxBatchTokens @9 :UInt32;     # most tokens in one forward call
  kvBytesPerPosition @10 :UInt64;  # KV cache bytes one position costs over the whole range served
  kvBytesFree @11 :UInt64;       # KV cache budget left (sessions reserve maxLength positions)
  maxMessageBytes @12 :UInt64;   # largest forward request it processes. Requests up to twice this
                                 # size are read and refused (`failed`, naming both sizes; the
                                 # connection stays usable); bigger ones close the connection (the
                                 # transport cannot skip a message it refuses to read)
  queuedCalls @13 :UInt32;       # forward/rollback calls accepted and not yet computed (the
                                 # running one included)
  queuedTokens @14 :UInt64;      # their tokens not yet computed: the node's backlog. A new call
                                 # does not wait for all of it: the node serves clients in turns of
                                 # a slice of tokens, so it waits for about one slice per other
                                 # client with work
  maxSessionsPerClient @15 :UInt32;
  # sessions one client may hold at once, counted by its peer id and, separately, by its source
  # address (`overloaded` past it). queuedCalls, queuedTokens and maxSessionsPerClient were added
  # in protocol 1 (additive): 0 from older nodes.
  maxQueuedTokensPerClient @16 :UInt64;
  # tokens of one client's calls accepted and not yet computed (`overloaded` past it): how far a
  # client pipelining a prompt (feature "pipelined") may run ahead. Additive: 0 from older nodes.
}

enum HiddenFormat {
  # Encoding of hidden states on the wire (see HiddenStates.data).
  f16 @0;   # IEEE half, round-to-nearest-even; the default
  f32 @1;   # IEEE single: exact (results bit-identical to a local run)
  q8 @2;    # per token row: f32 scale s = max|x|/127, then nEmbd int8 q = round(x/s); x ≈ q·s
}

struct HiddenStates {
  # nTokens rows of nEmbd values (the residual stream between two blocks), row-major.
  format @0 :HiddenFormat;
  nTokens @1 :UInt32;     # rows; 1 <= nTokens <= NodeInfo.maxBatchTokens
  nEmbd @2 :UInt32;       # must equal ModelIdentity.nEmbd
  data @3 :Data;          # little-endian; exactly nTokens·nEmbd·4 (f32), ·2 (f16) or
                          # nTokens·(4 + nEmbd) (q8) bytes. Non-finite values are refused.
}

struct Hop {
  # One further node of a chain, for server-to-server forwarding.
  address @0 :Text;       # "host:port" the previous node connects to
  peerId @1 :Text;        # the id that node must present; the connection is refused otherwise
  blockBegin @2 :UInt32;  # its range in this chain: must start where the previous hop's ends
  blockEnd @3 :UInt32;
}

struct OpenParams {
  blockBegin @0 :UInt32;   # range this session runs: within the node's [blockBegin, blockEnd)
  blockEnd @1 :UInt32;
  maxLength @2 :UInt32;    # positions (prompt + generated) the session may hold, >= 1
  hiddenFormat @3 :HiddenFormat;  # encoding of the hidden states this session sends onwards and
                                  # returns (inputs carry their own format)
  downstream @4 :List(Hop);
  # Empty: direct mode, forward returns this range's output. Otherwise the node opens a session on
  # downstream[0] (for downstream[1..] in turn) before replying, sends each forward's output
  # there, and returns what the last hop returns (the reply retraces the chain). The hops' ranges
  # must continue this one without gap or overlap. At most 64 hops.
  ringToken @5 :Data;
  # Empty: no ring. Otherwise 16..64 random bytes chosen by the client (feature "ring"), passed
  # unchanged to every downstream hop. The last node of the chain (downstream empty) claims the
  # OutputSink attached on it under this token (Node.attachSink; the open fails if none is) and
  # delivers every forward's output there instead of replying with it: a token costs one trip
  # around the ring (client -> first ... last -> client), and the replies along the chain become
  # acknowledgements (ForwardOutput without hidden states) that carry errors back to the client.
}

interface Node {
  info @0 () -> (info :NodeInfo);
  # Current description and capacity.
  openSession @1 (params :OpenParams) -> (session :Session);
  # Reserves maxLength positions of KV cache. Fails `overloaded` when maxSessions are open or the KV
  # budget is spent; `failed` on a bad range, length, or an unreachable/refusing downstream hop.
  attachSink @2 (token :Data, sink :OutputSink) -> ();
  # Ring mode (feature "ring"): the client, over its own connection to the chain's last node, hands
  # that node the sink for the outputs of the session it is about to open (through the first node)
  # with `OpenParams.ringToken = token`; the open claims it (once). `token`: 16..64 random bytes,
  # unguessable, so no other session can take the sink. Fails `failed` on a bad or already attached
  # token, `overloaded` when maxSessions sinks already wait. An unclaimed sink is dropped with the
  # connection it came on.
  payReceipts @3 (receipts :List(WorkReceipt)) -> (accepted :UInt32, duplicates :UInt32);
  # Credits (feature "receipts"): the client hands the node receipts for work it received
  # (docs/protocol.md, "Work receipts"). All or nothing: every receipt is checked first (the
  # signature, this node's peer id, model and blocks, the sizes, the time window), then the new ones
  # are stored durably (the reply comes after the ledger's synchronous commit, so an acknowledged
  # receipt survives a crash). `duplicates`: receipts already stored (a retry after a lost reply),
  # not an error. Fails `failed` on a bad receipt (naming it and the field), `overloaded` past the
  # per-client rate or a full ledger; `failed` too on a node that keeps no ledger. At most 64
  # receipts per call. Added in protocol 1 (additive).
}

struct WorkReceipt {
  # A client's signed statement that a node computed `tokens` positions through blocks
  # [blockBegin, blockEnd) of a session for it: tokens × blocks credits (src/net/work_receipt.h).
  clientKey @0 :Data;     # the signer's Ed25519 public key, 32 bytes
  nodeId @1 :Text;        # the peer id of the node paid
  session @2 :Data;       # 16 random bytes, one per client session
  sequence @3 :UInt64;    # 1, 2, ... within the session: (clientKey, session, sequence) is unique
  tokens @4 :UInt32;      # positions computed since the session's previous receipt, 1 .. 2^20
  blockBegin @5 :UInt32;
  blockEnd @6 :UInt32;
  modelId @7 :Data;       # the model's identity bytes (ModelIdentity.headerSha256), at most 64
  issuedAt @8 :UInt64;    # Unix seconds; a node refuses receipts over a day old or 5 min ahead
  signature @9 :Data;     # Ed25519 over the bytes docs/protocol.md lists, 64 bytes
}

interface OutputSink {
  # Hosted by a ring client; where the last node of its chain sends each forward's output.
  deliver @0 (callId :UInt64, output :ForwardOutput) -> ();
  # `callId`: the ForwardInput.callId of the call this output answers. `output`: as the last hop's
  # reply in chain mode (the last `outputLast` rows, nPast, computeMicros, hopComputeMicros of
  # every hop). The client fails it (and so the call) when it awaits no such call or the hidden
  # states are malformed; the last node acknowledges the forward only after this returns.
}

struct ForwardInput {
  input :union {
    tokens @0 :List(Int32);   # token ids, for a session whose range starts at block 0
    hidden @1 :HiddenStates;  # otherwise: the hidden states after block blockBegin - 1
  }
  startPosition @2 :Int64 = -1;
  # -1: the input continues the session (positions n_past, n_past+1, ...). Otherwise the position
  # of the first input token, 0 <= startPosition <= n_past; the session first drops the positions
  # from there on (as rollback), so a client can retry or re-run from a known point.
  outputLast @3 :UInt32;
  # How many trailing rows of the final output to return: 0 = all input rows, else
  # 1 <= outputLast <= input rows. Generation needs only the last (1). With 1, a node holding the
  # model's last block runs that block's feed-forward on the last row alone, as a local run that
  # wants only the next token's logits does (the same bits as the client's own run).
  callId @4 :UInt64;
  # Ring mode: the client's number for this call, passed down the chain unchanged and returned
  # with the output (OutputSink.deliver). Ignored otherwise.
  upstreamComputeMicros @5 :List(UInt64);
  # computeMicros of each earlier hop of the chain for this call, in chain order: set by the nodes
  # when forwarding (each appends its own), empty from a client. At most 64 entries.
  perTokenSums @6 :Bool;
  # Compute every row with the bits it gets in a call of its own (a client verifying drafted
  # tokens: docs/design.md, "Speculative decoding"), instead of a prompt batch's faster sums.
  # Passed down the chain unchanged. Added in protocol 1 (additive; older nodes ignore it).
}

struct ForwardOutput {
  hidden @0 :HiddenStates;  # the last `outputLast` rows after the last block of the chain; unset
                            # (nTokens 0) in a ring's acknowledgements: the rows went to the sink
  nPast @1 :UInt32;         # positions this session (the replying hop) now holds
  computeMicros @2 :UInt64; # time spent computing on this node for this call (not downstream)
  hopComputeMicros @3 :List(UInt64);
  # computeMicros of every hop whose work this output includes, in chain order (the input's
  # upstreamComputeMicros, then the last hop's own): one entry in direct mode, one per node of
  # the chain otherwise. Lets a client split a token's latency into compute and network.
  attestation @4 :ForwardAttestation;
  # Direct mode (a session without downstream hops and without a ring): the node's signature over
  # this call's input and output, so that a wrong result is attributable (docs/protocol.md,
  # "Signed replies"). Unset in chain and ring replies, and from nodes older than it (additive).
}

struct ForwardAttestation {
  # Signed with the node's Ed25519 identity key over the bytes net::ForwardAttestation::signed_bytes
  # builds: the domain "omninode/forward-attestation/1", the model (the digest of ModelIdentity.manifestCid,
  # 32 bytes, and fileSize), the session's blockBegin and blockEnd, sessionNonce, position, nTokens, outputRows,
  # inputSha256, outputSha256, publicKey (integers little-endian, fixed width).
  sessionNonce @0 :Data;  # 16 random bytes the node drew when the session opened
  position @1 :UInt64;    # the position of the call's first input row
  nTokens @2 :UInt32;     # input rows
  outputRows @3 :UInt32;  # rows returned
  inputSha256 @4 :Data;   # sha2-256 of a kind byte (0 token ids, 1 + HiddenFormat) then the input
                          # (token ids as little-endian int32, or HiddenStates.data)
  outputSha256 @5 :Data;  # the same over the returned HiddenStates (1 + format, then data)
  publicKey @6 :Data;     # the node's raw Ed25519 key (32 bytes): its peer id is derived from it
  signature @7 :Data;     # 64 bytes
  perTokenSums @8 :Bool;
  # The call asked for per-token sums (ForwardInput.perTokenSums), so a re-run must sum its rows so
  # too. Signed through the domain: "omninode/forward-attestation/per-token/1" instead of the
  # above (additive; an older node never sets it).
}

interface Session {
  # One sequence's state on a node (its KV cache). Released when closed, when the capability is
  # dropped (e.g. the client disconnects), or after the node's idle timeout; calls on a released
  # session fail with "session closed" / "session expired". Calls are processed in order.
  forward @0 (input :ForwardInput) -> (output :ForwardOutput);
  # Runs the range (and, in chain mode, the downstream hops) over the input. Errors leave the
  # session's positions unchanged when the input was refused before compute. In a ring the session
  # takes the next call as soon as this one's output has left for the next hop (or the sink); the
  # reply (an acknowledgement) follows when the rest of the ring is done, or carries its error.
  rollback @1 (n :UInt32) -> (nPast :UInt32);
  # Forgets the last n positions (here and downstream); fails if fewer are held.
  close @2 () -> ();
  # Frees the session now (here and downstream).
}
