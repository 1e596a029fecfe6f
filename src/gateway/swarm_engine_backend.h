// SwarmEngineBackend: the gateway's generations run on the swarm. This process holds only what a
// swarm client computes itself (the embeddings, with the tokenizer, and the head: a model CID's
// client shards, or a whole local file of which it uses those); each sequence opens its own swarm
// pipeline (swarm::make_swarm_pipeline: routing over the directory's live nodes, failover with
// replay when a node dies or stalls), so greedy output equals `omni run --bootstrap`'s. With no
// directory, a fixed list of nodes instead (net::make_remote_pipeline, as `omni run --peers`: no
// failover).
//
// A round's steps run at once, each on its sequence's thread, so that concurrent sessions' calls
// reach the nodes together (a node merges the calls that queue while it computes into one pass),
// and their heads, which come back at about the same time, run as one batch (a StepCombiner: the
// output matrix is read once for all of them). Prompts go in batches of min(512, the pipeline's
// max_batch()), as `omni run` sends them.
//
// Speculative decoding (net/speculative_decoder.h), as `omni run --draft/--lookup`: with a draft
// model or prompt lookup, each decoding step drafts up to draft_max tokens and verifies them in
// one trip through the chain, so greedy output stays the same token for token and sampled output
// keeps the model's distribution. A sequence logs its drafts' summary when it closes. A round that
// holds such a step runs its steps one after another (the decoders' draft models use the pool).
// Opening a sequence (a directory read, probes, the route) runs on the scheduler's thread.
#pragma once

#include <memory>
#include <string>

#include "gateway/engine_backend.h"
#include "gateway/swarm_watch.h"
#include "kernels/thread_pool.h"
#include "model/model.h"
#include "model/step_combiner.h"
#include "swarm/swarm_client.h"

namespace omni::gateway {

struct SwarmBackendOptions {
  swarm::SwarmClientOptions client;  // its model_identity: the model the nodes must serve
  std::vector<net::PeerAddress> peers;  // with no directory: the nodes to chain
  std::string model_id;              // the name clients use
  uint32_t n_ctx = 0;                // 0: min(training context, 4096)
  int threads = 0;                   // for the embeddings and head; 0: every core
  // Drafting: a model with this one's vocabulary (null: none), prompt lookup without one (greedy
  // requests only unless lookup_sampled: a seeded request's output then depends on timing).
  std::shared_ptr<const model::Model> draft;
  bool lookup = false;
  bool lookup_sampled = false;
  uint32_t draft_max = 8;
  bool draft_fixed = false;  // K = draft_max every step (DraftOptions::adapt false)
};

class SwarmEngineBackend final : public EngineBackend {
 public:
  // `directory` (null: options.peers) and `watch` must outlive the backend. Errors: the model has
  // no tokenizer, a draft model whose vocabulary differs.
  static Result<std::unique_ptr<SwarmEngineBackend>> create(std::unique_ptr<model::Model> client_model,
                                                            swarm::Directory* directory, const SwarmWatch& watch,
                                                            SwarmBackendOptions options);

  const ModelDescription& description() const override { return description_; }
  const model::Tokenizer& tokenizer() const override { return tokenizer_; }
  size_t max_batch() const override { return kPromptBatch; }
  bool speculates() const override { return options_.draft || options_.lookup; }
  // Errors: make_swarm_pipeline's (no node serves a block, every route failed), or
  // make_remote_pipeline's, or the draft model's (a session of n_ctx does not fit).
  Result<std::unique_ptr<EngineSequence>> open_sequence(uint32_t n_ctx) override;
  void run_steps(std::span<EngineStep> steps) override;
  // copy_sequence() is not possible: a sequence's KV cache lives on the nodes of its chain, and the
  // node protocol has no operation that forks a session's cache (n choices would cost n prefills
  // on every node), so n > 1 is refused here (description().no_sequence_copies).
  // The swarm as the watch saw it last.
  SwarmSnapshot swarm_snapshot(const GatewayLoad& load) const override;

  static constexpr size_t kPromptBatch = 512;

 private:
  SwarmEngineBackend(std::unique_ptr<model::Model> model, model::Tokenizer tokenizer, swarm::Directory* directory,
                     const SwarmWatch& watch, SwarmBackendOptions options, int threads)
      : model_(std::move(model)),
        tokenizer_(std::move(tokenizer)),
        directory_(directory),
        watch_(watch),
        options_(std::move(options)),
        pool_(threads),
        head_combiner_(pool_) {}

  std::unique_ptr<model::Model> model_;
  model::Tokenizer tokenizer_;
  swarm::Directory* directory_;
  const SwarmWatch& watch_;
  SwarmBackendOptions options_;
  kernels::ThreadPool pool_;
  model::StepCombiner head_combiner_;  // every sequence's head runs through it, on pool_
  ModelDescription description_;
};

}  // namespace omni::gateway
