// Pipeline: what `omni run` drives to turn token ids into the logits of the last one. The local
// pipeline runs every block in this process. The remote one sends token ids to the node serving
// block 0 (which embeds them), the nodes run the blocks, and the head (output norm + output
// matrix) runs here on the last token's hidden state returned by the last node: the client keeps
// the vocabulary-sized parts, the wire carries one hidden row per generated token.
//
// Credits: a remote pipeline pays each node of its route with signed work receipts
// (RemoteOptions::receipt_every, work_receipt.h), over its own connection to that node.
//
// Routes (docs/protocol.md, "Routes"):
// - Ring (the default): each call goes to the first node only, every node forwards its output to
//   the next, and the last one delivers the final row straight to the client, through a sink the
//   client attached over its own connection to that node (no listener on the client: it works
//   behind NAT). A token costs one trip around the ring. The replies along the chain become
//   acknowledgements that only carry errors back, off the critical path.
// - Chain: as Ring, but the final row travels back along the chain as the replies (Cap'n Proto 0.9
//   has no three-party handoff): the forward trip plus the way back. Kept for measurements.
// - Direct: the client calls each node in turn (hidden states pass through the client).
//
// A Pipeline is used from one thread (the one that created it). Errors are values; a node that
// dies or stalls gives an Error naming it (connection lost, or timed out after call_timeout_s;
// after a ring or chain timeout the nodes that do not answer a probe are named).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "kernels/thread_pool.h"
#include "model/model.h"
#include "model/step_combiner.h"
#include "net/hidden_codec.h"
#include "net/node_info.h"
#include "net/peer_address.h"

namespace omni::net {

class Pipeline {
 public:
  virtual ~Pipeline() = default;
  // Runs `tokens` (1..max_batch()) at the next positions; writes the last token's logits (n_vocab).
  virtual Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) = 0;
  // The same, writing the logits of every token (tokens.size() x n_vocab), each with the bits a
  // one-token forward() gives it (model::BatchSums::kPerToken on every node): what verifying
  // drafted tokens takes (speculative_decoder.h).
  virtual Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) = 0;
  // Forgets the last n positions (drafted tokens the target rejected). Remote pipelines send it
  // with the next call (ForwardInput.startPosition) instead of spending a round trip on it. An
  // Error if fewer positions are held.
  virtual Result<void> rollback(uint32_t n) = 0;
  // Runs a prompt of any length (within the sessions' positions) at the next positions; writes its
  // last token's logits. This one calls forward() on max_batch() pieces in turn. A remote pipeline
  // on a ring or chain of nodes that announce "pipelined" pipelines it instead (time to first
  // token): each piece is cut into micro-batches (RemoteOptions::micro_batch) sent without waiting
  // for the earlier ones, so node 2 works on one while node 1 works on the next. The logits are
  // the same bits: a row is computed in a batch of two or more rows (node slices are alike, see
  // docs/protocol.md, "Limits") exactly when its piece has two or more.
  virtual Result<void> prefill(std::span<const int32_t> tokens, std::vector<float>& logits);
  // Runs `tokens` (1..max_batch()) at the next positions, each leaving in the caches the bits a
  // one-token forward() of its own leaves, and computes no logits: what rebuilding a session's
  // generation steps on a new route takes (swarm/failover.h). A remote pipeline sends them as one
  // call whose rows every node sums per token (model::BatchSums::kPerToken), one trip instead of
  // one per token; this one makes one forward() per token.
  virtual Result<void> replay_steps(std::span<const int32_t> tokens);
  virtual size_t max_batch() const = 0;
  // One line for the end-of-run summary (KV cache, nodes, bytes moved; remote pipelines add the
  // median compute per generated token: "per token: nodes X ms (a + b + c), head Y ms").
  virtual std::string summary() const = 0;

  // Per hop of a remote route, in route order (empty for a local pipeline): the work this client
  // received from the node (what it pays it for: credits) and the compute time the node reported
  // per generated token (its reply's figure, measured at run time). The swarm client weighs nodes by
  // the latter against their records' claims (reputation.h); a gateway counts the former
  // (fair_use.h).
  struct HopReport {
    std::string peer_id;
    uint32_t block_begin = 0, block_end = 0;
    uint64_t work = 0;     // tokens × blocks received from it
    double median_ms = 0;  // median over the generated tokens; 0: none measured
    size_t tokens = 0;     // generated tokens measured
  };
  virtual std::vector<HopReport> hop_reports() const { return {}; }
};

// All blocks in this process: `model` must be loaded whole and outlive the pipeline, as `pool`.
Result<std::unique_ptr<Pipeline>> make_local_pipeline(const model::Model& model, uint32_t n_ctx,
                                                      kernels::ThreadPool& pool);

// How a remote pipeline's calls travel over its hops (`omni run --route`): Ring, the client sends to
// the first node and the last node delivers to the client's sink; Chain, each node forwards to the
// next and the reply comes back along the chain; Direct, the client calls each node itself. (The
// hops themselves, chosen from a swarm, are a swarm::Route.)
enum class Topology { Ring, Chain, Direct };
Result<Topology> parse_topology(std::string_view name);  // "ring" | "chain" | "direct"
const char* topology_name(Topology topology);

struct RemoteOptions {
  std::vector<PeerAddress> peers;  // any order; a chain covering [0, n_layer) is chosen from them
  // Where the nodes reach each other, by peer id (ID@HOST:PORT; e.g. a private network between the
  // nodes): a node of the chain dials the next one here instead of at its `peers` address.
  std::vector<PeerAddress> hop_addresses;
  HiddenEncoding encoding = HiddenEncoding::F16;
  Topology topology = Topology::Ring;
  std::string data_dir;            // the client's identity key lives here
  uint32_t connect_timeout_s = 10;
  uint32_t call_timeout_s = 60;
  std::function<void(const std::string&)> log;  // progress lines (which node serves what)
  // The model the nodes must serve; default identify_model(model), which hashes the whole file. A
  // model loaded from a model CID's shards names its identity here (identify_sharded_model).
  std::optional<ModelIdentity> model_identity;
  // Credits (docs/design.md, "Credits"): the client signs a work receipt for each node of its
  // route that takes them (feature "receipts") every receipt_every tokens it computed there, and
  // for the rest when the pipeline goes (waiting up to settle_timeout_ms for the acknowledgements,
  // unless a call failed: then a failover is not held up),
  // then logs one line per node: "credits: node ID blocks [B, E) work W acknowledged A" (W: tokens
  // × blocks this client received from it; A: the part the node acknowledged storing). 0: no
  // receipts.
  uint32_t receipt_every = 256;
  uint32_t settle_timeout_ms = 3000;
  // Where the head runs: through this combiner, in one batch with the heads of other pipelines
  // (other threads) that reach it at the same time (the gateway's sessions); it must outlive the
  // pipeline and use the pool given to make_remote_pipeline. Null: alone, on that pool.
  model::StepCombiner* head_combiner = nullptr;
  // Pipelined prefill (Pipeline::prefill): tokens per micro-batch (at least 2 are sent; a piece
  // never leaves one token alone). 0: one max_batch() piece at a time. The client keeps at most the
  // smallest maxQueuedTokensPerClient of its nodes in flight (max_batch() for nodes that announce none).
  uint32_t micro_batch = 128;
};

// Connects to the peers, checks they serve the same model as `model` (the local file gives the
// tokenizer, and the head), picks the chain and opens sessions of n_ctx positions. max_batch()
// respects every node's maxBatchTokens and message size (forward() refuses bigger batches before
// sending anything).
Result<std::unique_ptr<Pipeline>> make_remote_pipeline(const model::Model& model, const RemoteOptions& options,
                                                       uint32_t n_ctx, kernels::ThreadPool& pool);

}  // namespace omni::net
