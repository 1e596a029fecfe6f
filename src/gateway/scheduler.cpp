#include "gateway/scheduler.h"

#include <algorithm>
#include <limits>

#include "model/sampler.h"

namespace omni::gateway {

// A running generation: its sequence in the backend and its sampling state.
struct Scheduler::Active {
  std::shared_ptr<GenerationJob> job;
  std::unique_ptr<EngineSequence> sequence;
  model::Sampler sampler;
  model::Detokenizer detokenizer;
  model::StopDetector stop;
  size_t prompt_done = 0;  // prompt tokens already run
  model::TokenId last_token = 0;
  int generated = 0;
  std::vector<float> logits;
  std::vector<float> biased;  // logits plus the job's logit_bias, when it has one
  bool finished = false;
  std::vector<ProducedToken> produced;  // a speculating backend's tokens of the last round
  std::optional<model::TokenConstraint> constraint;  // when the job has a grammar
  std::vector<float> masked;                         // the constraint's scratch logits
  Active* leader = nullptr;   // while set: waits for the leader's prompt, then copies its sequence
};

Scheduler::Scheduler(EngineBackend& backend, SchedulerOptions options, SchedulerObserver observer)
    : backend_(backend), options_(options), observer_(std::move(observer)) {
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

void Scheduler::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  for (auto& group : queue_)
    for (auto& job : group) job->finish("error", Error{ErrorCode::Unavailable, "the gateway is shutting down"});
  queue_.clear();
  queued_jobs_ = 0;
  queue_depth_ = 0;
}

bool Scheduler::submit(std::shared_ptr<GenerationJob> job) {
  std::vector<std::shared_ptr<GenerationJob>> group;
  group.push_back(std::move(job));
  return submit_group(std::move(group));
}

bool Scheduler::submit_group(std::vector<std::shared_ptr<GenerationJob>> jobs) {
  if (jobs.empty()) return true;
  {
    std::lock_guard lock(mutex_);
    // Requests whose clients already left do not hold queue places (a group goes when all its
    // jobs are cancelled: its client cancels them together).
    std::erase_if(queue_, [this](const auto& group) {
      const bool gone = std::all_of(group.begin(), group.end(), [](const auto& j) { return j->cancelled(); });
      if (gone) queued_jobs_ -= group.size();
      return gone;
    });
    if (stopping_ || queued_jobs_ + jobs.size() > options_.max_queue) {
      queue_depth_ = queued_jobs_;
      return false;
    }
    queued_jobs_ += jobs.size();
    queue_.push_back(std::move(jobs));
    queue_depth_ = queued_jobs_;
  }
  wake_.notify_one();
  return true;
}

Scheduler::Active* Scheduler::admit(std::shared_ptr<GenerationJob> job, Active* leader,
                                     std::vector<std::unique_ptr<Active>>& active) {
  if (job->cancelled()) {
    job->finish("cancelled");
    if (observer_.on_cancelled) observer_.on_cancelled(*job);
    return nullptr;
  }
  auto sampler = model::Sampler::create(job->spec().sampling);
  if (!sampler) {
    job->finish("error", sampler.error());
    return nullptr;
  }
  const uint32_t n_ctx = static_cast<uint32_t>(job->spec().prompt.size() + job->spec().max_tokens);
  auto sequence = backend_.open_sequence(n_ctx);
  if (!sequence) {
    job->finish("error", sequence.error().with_context("could not open a session"));
    return nullptr;
  }
  model::StopDetector stop(job->spec().stops);
  active.push_back(std::unique_ptr<Active>(new Active{std::move(job), std::move(*sequence), std::move(*sampler),
                                                      model::Detokenizer(backend_.tokenizer()), std::move(stop), 0, 0,
                                                      0, {}, {}, false, {}, std::nullopt, {}, leader}));
  if (active.back()->job->spec().grammar) active.back()->constraint.emplace(active.back()->job->spec().grammar);
  return active.back().get();
}

void Scheduler::fork_followers(Active& leader, std::vector<std::unique_ptr<Active>>& active) {
  for (auto& f : active) {
    if (f->leader != &leader) continue;
    Active& b = *f;
    b.leader = nullptr;
    if (auto copied = backend_.copy_sequence(*leader.sequence, *b.sequence); !copied) {
      b.job->finish("error", copied.error().with_context("could not share the prompt"));
      b.finished = true;
      continue;
    }
    b.logits = leader.logits;
    b.prompt_done = b.job->spec().prompt.size();
    for (model::TokenId t : b.job->spec().prompt) b.sampler.accept(t);
    b.finished = generate_token(b);
  }
}

bool Scheduler::generate_token(Active& a) {
  // Sampled from the biased logits; log-probs are reported from the model's own (emit_token).
  std::span<const float> scores = a.logits;
  if (const auto& bias = a.job->spec().logit_bias; !bias.empty()) {
    a.biased.assign(a.logits.begin(), a.logits.end());
    for (const auto& [token, add] : bias) {
      if (token < 0 || static_cast<size_t>(token) >= a.biased.size()) continue;  // the server checked them
      float& logit = a.biased[static_cast<size_t>(token)];
      logit = add <= -100.0f ? -std::numeric_limits<float>::infinity() : logit + add;
    }
    scores = a.biased;
  }
  if (!a.constraint) return emit_token(a, a.sampler.sample(scores), a.logits, false);
  auto drawn = a.constraint->sample(a.sampler, scores, a.masked);
  if (!drawn) {
    a.job->finish("error", Error{ErrorCode::Internal, "the output grammar admits no token here"});
    return true;
  }
  return emit_token(a, *drawn, a.logits, false);
}

bool Scheduler::emit_token(Active& a, model::TokenId id, std::span<const float> logits, bool accepted) {
  GenerationJob& job = *a.job;
  if (a.generated == 0 && observer_.on_first_token) observer_.on_first_token(job);
  auto finish_with_rest = [&](const char* reason) {
    std::string rest = a.stop.stopped() ? "" : a.stop.feed(a.detokenizer.flush()) + a.stop.flush();
    job.append(rest, 0);
    job.finish(reason);
    return true;
  };
  if (!job.spec().ignore_eos && backend_.tokenizer().is_end_of_generation(id)) return finish_with_rest("stop");
  if (!accepted) a.sampler.accept(id);
  if (a.constraint) a.constraint->accept(id);
  auto piece = a.detokenizer.feed(id);
  if (!piece) {
    job.finish("error", piece.error());
    return true;
  }
  ++a.generated;
  std::optional<TokenLogprob> logprob;
  if (job.spec().logprobs >= 0) {
    const model::Tokenizer& tokenizer = backend_.tokenizer();
    logprob.emplace();
    logprob->token = tokenizer.token_to_piece(id);
    logprob->logprob = model::token_logprob(logits, id);
    for (const auto& [alternative, lp] : model::top_logprobs(logits, job.spec().logprobs))
      logprob->top.emplace_back(tokenizer.token_to_piece(alternative), lp);
  }
  job.append(a.stop.feed(*piece), 1, std::move(logprob));
  if (observer_.on_tokens) observer_.on_tokens(job, 1);
  if (a.stop.stopped()) {
    job.finish("stop");
    return true;
  }
  // A whole value that nothing may extend: done, without running the model for an end token.
  if (a.constraint && a.constraint->finished()) return finish_with_rest("stop");
  if (a.generated >= job.spec().max_tokens) return finish_with_rest("length");
  a.last_token = id;
  return false;
}

std::vector<std::shared_ptr<GenerationJob>> Scheduler::take_next(size_t sessions) {
  // A group's jobs are one request's: the first one's class is the group's.
  const auto is_priority = [](const std::vector<std::shared_ptr<GenerationJob>>& g) { return g.front()->spec().priority; };
  const auto first_priority = std::find_if(queue_.begin(), queue_.end(), is_priority);
  const auto first_free = std::find_if_not(queue_.begin(), queue_.end(), is_priority);
  const bool free_turn = first_free != queue_.end() &&
                         (first_priority == queue_.end() || priority_streak_ + 1 >= std::max<size_t>(1, options_.free_every));
  const auto pick = free_turn ? first_free : first_priority;
  // A group larger than max_sessions runs alone, when nothing else does.
  if (sessions != 0 && sessions + pick->size() > options_.max_sessions) return {};
  priority_streak_ = (!free_turn && first_free != queue_.end()) ? priority_streak_ + 1 : 0;
  auto group = std::move(*pick);
  queue_.erase(pick);
  queued_jobs_ -= group.size();
  return group;
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Active>> active;
  std::vector<EngineStep> steps;
  std::vector<size_t> stepped;  // steps[j] is active[stepped[j]]'s
  for (;;) {
    std::vector<std::vector<std::shared_ptr<GenerationJob>>> admitted;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !active.empty(); });
      if (stopping_) break;
      size_t sessions = active.size();
      while (!queue_.empty()) {
        auto group = take_next(sessions);
        if (group.empty()) break;
        sessions += group.size();
        admitted.push_back(std::move(group));
      }
      queue_depth_ = queued_jobs_;
    }
    for (auto& group : admitted) {
      Active* leader = nullptr;  // the group's first job that got a session prefills for the others
      for (auto& job : group)
        if (Active* a = admit(std::move(job), leader, active); a && !leader) leader = a;
    }
    // A job whose leader is leaving before its prompt is in prefills for itself.
    for (auto& a : active)
      if (a->leader && (a->leader->finished || a->leader->job->cancelled())) a->leader = nullptr;
    // Drop the generations whose clients left: their sessions are freed here.
    std::erase_if(active, [&](const std::unique_ptr<Active>& a) {
      if (!a->job->cancelled()) return false;
      a->job->finish("cancelled");
      if (observer_.on_cancelled) observer_.on_cancelled(*a->job);
      return true;
    });
    active_count_ = active.size();
    if (active.empty()) continue;

    // Every decoding session's token, then whole prompt chunks while the round has room, the
    // prompting sessions taking turns to go first. Chunks are never cut to fit: their boundaries
    // change the rounding, and a prompt's tokens must not depend on the load.
    steps.clear();
    stepped.clear();
    size_t budget = options_.max_batch_tokens;
    for (size_t i = 0; i < active.size(); ++i) {
      Active& a = *active[i];
      if (a.prompt_done < a.job->spec().prompt.size()) continue;
      EngineStep step;
      step.sequence = a.sequence.get();
      step.logits = &a.logits;
      step.tokens = std::span<const model::TokenId>(&a.last_token, 1);
      // A grammar or a logit_bias changes each token's draw: no drafting past them.
      if (backend_.speculates() && !a.constraint && a.job->spec().logit_bias.empty()) {
        step.sampler = &a.sampler;
        step.budget = static_cast<uint32_t>(a.job->spec().max_tokens - a.generated);
        step.produced = &a.produced;
      }
      steps.push_back(std::move(step));
      stepped.push_back(i);
      budget -= std::min<size_t>(budget, 1);
    }
    const size_t decoding = steps.size();
    for (size_t k = 0; k < active.size(); ++k) {
      const size_t i = (prompt_turn_ + k) % active.size();
      Active& a = *active[i];
      const auto& prompt = a.job->spec().prompt;
      if (a.prompt_done >= prompt.size() || a.leader) continue;
      const size_t n = std::min(backend_.max_batch(), prompt.size() - a.prompt_done);
      if (n > budget && steps.size() > decoding) continue;
      EngineStep step;
      step.sequence = a.sequence.get();
      step.logits = &a.logits;
      step.tokens = std::span<const model::TokenId>(prompt.data() + a.prompt_done, n);
      steps.push_back(std::move(step));
      stepped.push_back(i);
      budget -= std::min(budget, n);
    }
    ++prompt_turn_;
    backend_.run_steps(steps);

    for (size_t j = 0; j < steps.size(); ++j) {
      Active& a = *active[stepped[j]];
      if (!steps[j].result) {
        a.job->finish("error", steps[j].result.error());
        a.finished = true;
        continue;
      }
      const auto& prompt = a.job->spec().prompt;
      if (a.prompt_done < prompt.size()) {
        a.prompt_done += steps[j].tokens.size();
        if (observer_.on_prompt) observer_.on_prompt(*a.job, steps[j].tokens.size());
        if (a.prompt_done < prompt.size()) continue;
        // The whole prompt is in: the sampler sees it as `omni run`'s does (for penalties).
        for (model::TokenId t : prompt) a.sampler.accept(t);
        fork_followers(a, active);
      } else if (steps[j].sampler) {
        for (const ProducedToken& t : a.produced)
          if ((a.finished = emit_token(a, t.id, t.logits, true))) break;
        continue;
      }
      a.finished = generate_token(a);
    }
    for (auto& a : active)
      if (a->leader && a->leader->finished) a->leader = nullptr;
    std::erase_if(active, [](const std::unique_ptr<Active>& a) { return a->finished; });
    active_count_ = active.size();
  }
  for (auto& a : active) a->job->finish("error", Error{ErrorCode::Unavailable, "the gateway is shutting down"});
  active_count_ = 0;
}

}  // namespace omni::gateway
