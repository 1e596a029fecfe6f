// FailoverPipeline with fake pipelines: failures anywhere (mid-generation, in the prompt, during a
// replay, several in one session, when opening) must give exactly the logits of a session without
// one, the replay must repeat the prompt's batches as they were and send the one-token steps
// together (replay_steps), and a hopeless swarm must end in
// a clear error after the bounded attempts, with backoff between them. Only retryable codes are
// retried: an invalid call (a batch over max_batch()) or corrupt data fails at once.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>

#include "swarm/failover.h"

namespace omni::swarm {
namespace {

// A deterministic "model": logits depend on every token seen so far and on how prompt batches were
// cut (as real rounding does), so a replay in other batches would show; a one-token call, each row
// of a forward_all and each token of replay_steps change the state alike (BatchSums::kPerToken).
struct Shared {
  int open_attempts = 0;
  std::set<int> refused_opens;   // open attempts (1-based) that fail, as a route to a dead node does
  int refuse_from = 0;           // > 0: every open attempt from this one on fails
  std::map<int, int> fail_after; // pipeline (1-based, of those opened) -> calls it serves before failing
  ErrorCode failure = ErrorCode::Unavailable;  // what those failures are
  ErrorCode refusal = ErrorCode::Unavailable;  // what refused opens are
  std::vector<std::vector<std::vector<int32_t>>> calls;  // per pipeline
  std::vector<std::string> kinds;  // per pipeline, a letter per call: f forward, a forward_all, r replay_steps
  std::vector<uint32_t> rollbacks;  // every pipeline's, in order
};

class FakePipeline final : public net::Pipeline {
 public:
  FakePipeline(Shared& s, int index) : s_(s), index_(index) {}
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    if (auto r = take_call(tokens, 'f'); !r) return r;
    if (tokens.size() == 1) {
      step(tokens[0]);
    } else {
      for (int32_t t : tokens) positions_.push_back(state() * 1000003u + static_cast<uint32_t>(t) + 1);
      positions_.back() = positions_.back() * 31u + static_cast<uint32_t>(tokens.size());  // batch shape matters
    }
    logits.clear();
    append_logits(logits);
    return {};
  }
  Result<void> forward_all(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    if (auto r = take_call(tokens, 'a'); !r) return r;
    logits.clear();
    for (int32_t t : tokens) {
      step(t);
      append_logits(logits);
    }
    return {};
  }
  Result<void> replay_steps(std::span<const int32_t> tokens) override {
    if (auto r = take_call(tokens, 'r'); !r) return r;
    for (int32_t t : tokens) step(t);
    return {};
  }
  Result<void> rollback(uint32_t n) override {
    if (n > positions_.size()) return Error{ErrorCode::InvalidArgument, "rolling back more than the session holds"};
    s_.rollbacks.push_back(n);
    positions_.resize(positions_.size() - n);
    return {};
  }
  size_t max_batch() const override { return 4; }
  std::string summary() const override { return "fake"; }

 private:
  Result<void> take_call(std::span<const int32_t> tokens, char kind) {
    if (tokens.empty() || tokens.size() > max_batch())
      return Error{ErrorCode::InvalidArgument, "a call of " + std::to_string(tokens.size()) + " tokens"};
    if (auto it = s_.fail_after.find(index_); it != s_.fail_after.end() && calls_ >= it->second)
      return Error{s_.failure, "node 127.0.0.1:" + std::to_string(index_) + " lost"};
    ++calls_;
    s_.calls[index_ - 1].emplace_back(tokens.begin(), tokens.end());
    s_.kinds[index_ - 1] += kind;
    return {};
  }
  uint32_t state() const { return positions_.empty() ? 17u : positions_.back(); }
  // What a one-token call does to the state.
  void step(int32_t t) { positions_.push_back((state() * 1000003u + static_cast<uint32_t>(t) + 1) * 31u + 1); }
  void append_logits(std::vector<float>& logits) const {
    for (int i = 0; i < 8; ++i) logits.push_back(static_cast<float>((state() >> (i * 4)) & 15));
  }

  Shared& s_;
  int index_;
  int calls_ = 0;
  std::vector<uint32_t> positions_;  // the state after each position the session holds
};

FailoverPipeline::Opener opener(Shared& s) {
  return [&s]() -> Result<std::unique_ptr<net::Pipeline>> {
    const int attempt = ++s.open_attempts;
    if (s.refused_opens.count(attempt) || (s.refuse_from > 0 && attempt >= s.refuse_from))
      return Error{s.refusal, "no node in the swarm serves block 2 of 4"};
    s.calls.emplace_back();
    s.kinds.emplace_back();
    return std::unique_ptr<net::Pipeline>(new FakePipeline(s, static_cast<int>(s.calls.size())));
  };
}

FailoverOptions quick(uint32_t max_attempts) {
  FailoverOptions o;
  o.max_attempts = max_attempts;
  o.backoff_ms = 0;
  return o;
}

// Greedy generation of n tokens after a prompt, as omni run does it.
std::vector<int32_t> generate(net::Pipeline& p, std::vector<int32_t> prompt, int n) {
  std::vector<float> logits;
  for (size_t i = 0; i < prompt.size(); i += p.max_batch()) {
    std::span<const int32_t> b(prompt.data() + i, std::min(p.max_batch(), prompt.size() - i));
    auto r = p.forward(b, logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r) return {};
  }
  std::vector<int32_t> out;
  for (int k = 0; k < n; ++k) {
    const int32_t id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(id);
    const int32_t next[1] = {id};
    auto r = p.forward(next, logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r) break;
  }
  return out;
}

const std::vector<int32_t> kPrompt{5, 3, 9, 1, 4, 4, 7, 2, 6, 8};

std::vector<int32_t> no_fault_output(int n) {
  Shared clean;
  auto p = FailoverPipeline::create(opener(clean), quick(3));
  EXPECT_TRUE(p.ok());
  return generate(**p, kPrompt, n);
}

TEST(Failover, OutputEqualsTheNoFaultOutput) {
  const auto expected = no_fault_output(20);
  for (int fail_at : {0, 1, 2, 3, 7, 15}) {  // 0..2: in the prompt (3 batches)
    Shared s;
    s.fail_after[1] = fail_at;
    auto p = FailoverPipeline::create(opener(s), quick(3));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(generate(**p, kPrompt, 20), expected) << "failure after " << fail_at << " calls";
    EXPECT_EQ((*p)->failovers(), 1u);
    ASSERT_EQ(s.calls.size(), 2u);
    // The new pipeline saw the old one's prompt batches as they were, then its one-token steps
    // in calls of up to max_batch() (4), then continued.
    const size_t prompt_calls = std::min<size_t>(s.calls[0].size(), 3);
    const size_t steps = s.calls[0].size() - prompt_calls;
    const size_t replays = (steps + 3) / 4;
    ASSERT_GE(s.calls[1].size(), prompt_calls + replays);
    std::vector<int32_t> stepped, replayed;
    for (size_t i = 0; i < s.calls[0].size(); ++i) {
      if (i < prompt_calls) EXPECT_EQ(s.calls[1][i], s.calls[0][i]);
      else stepped.push_back(s.calls[0][i].at(0));
    }
    for (size_t i = prompt_calls; i < prompt_calls + replays; ++i) {
      EXPECT_EQ(s.kinds[1][i], 'r');
      replayed.insert(replayed.end(), s.calls[1][i].begin(), s.calls[1][i].end());
    }
    EXPECT_EQ(replayed, stepped);
    const auto& e = (*p)->events().front();
    EXPECT_EQ(e.replayed, s.calls[0].size());
    EXPECT_EQ(e.attempts, 1u);
    EXPECT_NE(e.reason.find("lost"), std::string::npos);
  }
}

// Speculative decoding: rejected drafts are rolled back; a replay sends what the sessions held
// (the verification calls without their rolled-back tails), their rows as one-token steps.
TEST(Failover, TheReplayLeavesOutRolledBackPositions) {
  Shared s;
  s.fail_after[1] = 3;
  auto p = FailoverPipeline::create(opener(s), quick(3));
  ASSERT_TRUE(p.ok());
  std::vector<float> logits;
  ASSERT_TRUE((*p)->forward(std::vector<int32_t>{1, 2, 3}, logits));
  ASSERT_TRUE((*p)->forward_all(std::vector<int32_t>{4, 5, 6, 7}, logits));
  ASSERT_TRUE((*p)->rollback(3));  // 5, 6, 7 rejected
  ASSERT_TRUE((*p)->forward_all(std::vector<int32_t>{8, 9}, logits));
  ASSERT_TRUE((*p)->rollback(1));
  ASSERT_TRUE((*p)->forward(std::vector<int32_t>{10}, logits));  // the 4th call: fails, replayed
  EXPECT_EQ((*p)->failovers(), 1u);
  EXPECT_EQ(s.rollbacks, (std::vector<uint32_t>{3, 1}));
  ASSERT_EQ(s.calls.size(), 2u);
  const std::vector<std::vector<int32_t>> replayed{{1, 2, 3}, {4, 8}, {10}};
  EXPECT_EQ(s.calls[1], replayed);
  EXPECT_EQ(s.kinds[1], "frf");
  EXPECT_FALSE((*p)->rollback(100));

  // The state after the failover is the one a session without it reaches.
  Shared clean;
  auto q = FailoverPipeline::create(opener(clean), quick(3));
  ASSERT_TRUE(q.ok());
  std::vector<float> expected;
  ASSERT_TRUE((*q)->forward(std::vector<int32_t>{1, 2, 3}, expected));
  ASSERT_TRUE((*q)->forward_all(std::vector<int32_t>{4, 5, 6, 7}, expected));
  ASSERT_TRUE((*q)->rollback(3));
  ASSERT_TRUE((*q)->forward_all(std::vector<int32_t>{8, 9}, expected));
  ASSERT_TRUE((*q)->rollback(1));
  ASSERT_TRUE((*q)->forward(std::vector<int32_t>{10}, expected));
  EXPECT_EQ(logits, expected);
}

TEST(Failover, SeveralFailuresInOneGeneration) {
  const auto expected = no_fault_output(30);
  Shared s;
  // 1: the prompt's 3 batches and 2 steps; 2: their replay (4 calls) and 5 steps; 3: the replay (5
  // calls) and 15 steps; 4 is lost right after its replay (9 calls) and retried call.
  s.fail_after = {{1, 5}, {2, 9}, {3, 20}, {4, 10}};
  auto p = FailoverPipeline::create(opener(s), quick(3));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(generate(**p, kPrompt, 30), expected);
  EXPECT_EQ((*p)->failovers(), 4u);
  EXPECT_EQ(s.calls.size(), 5u);
}

TEST(Failover, AFailureDuringTheReplayStartsAnotherAttempt) {
  const auto expected = no_fault_output(20);
  Shared s;
  // 1 serves the prompt's 3 batches and 9 steps; 2 dies in the middle of its replay (3 batches, then
  // the steps in 3 calls), 3 before its first call.
  s.fail_after = {{1, 12}, {2, 4}, {3, 0}};
  auto p = FailoverPipeline::create(opener(s), quick(4));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(generate(**p, kPrompt, 20), expected);
  ASSERT_EQ((*p)->failovers(), 1u);
  EXPECT_EQ((*p)->events().front().attempts, 3u);
  EXPECT_EQ(s.calls.size(), 4u);
  // The replay (3 batches, 9 steps in 3 calls), then the failed call and the 10 after it.
  EXPECT_EQ(s.kinds[3], "fffrrr" + std::string(11, 'f'));
}

TEST(Failover, RetriesUnreachableRoutesThenGivesUp) {
  const auto expected = no_fault_output(10);
  Shared s;
  s.fail_after[1] = 4;
  s.refused_opens = {2, 3};
  auto p = FailoverPipeline::create(opener(s), quick(4));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(generate(**p, kPrompt, 10), expected);
  EXPECT_EQ((*p)->events().front().attempts, 3u);

  Shared hopeless;
  hopeless.fail_after[1] = 2;
  hopeless.refuse_from = 2;
  auto q = FailoverPipeline::create(opener(hopeless), quick(3));
  ASSERT_TRUE(q.ok());
  std::vector<float> logits;
  const int32_t t[1] = {1};
  EXPECT_TRUE((*q)->forward(t, logits).ok());
  EXPECT_TRUE((*q)->forward(t, logits).ok());
  auto r = (*q)->forward(t, logits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable) << r.error().message;  // the last reason's code
  EXPECT_EQ(hopeless.open_attempts, 4);  // the first opening and 3 attempts, no more
}

TEST(Failover, TheFirstOpeningIsRetriedToo) {
  Shared s;
  s.refused_opens = {1, 2};
  auto p = FailoverPipeline::create(opener(s), quick(3));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(generate(**p, kPrompt, 10), no_fault_output(10));

  Shared never;
  never.refuse_from = 1;
  auto q = FailoverPipeline::create(opener(never), quick(2));
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code, ErrorCode::Unavailable) << q.error().message;
  EXPECT_EQ(never.open_attempts, 2);
}

TEST(Failover, BacksOffBetweenAttempts) {
  Shared s;
  s.refuse_from = 1;
  FailoverOptions o;
  o.max_attempts = 4;
  o.backoff_ms = 20;
  o.max_backoff_ms = 50;
  std::vector<std::string> lines;
  o.log = [&](const std::string& line) { lines.push_back(line); };
  const auto t0 = std::chrono::steady_clock::now();
  auto p = FailoverPipeline::create(opener(s), o);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(p.ok());
  EXPECT_GE(ms, 20 + 40 + 50);  // doubling, capped
  EXPECT_EQ(lines.size(), 3u);  // each failed attempt but the last is logged; the last is the error
}

// The issue this guards against: an oversized batch was retried 8 times over 7 s.
TEST(Failover, AnInvalidCallFailsAtOnceWithItsCode) {
  Shared s;
  FailoverOptions o;  // the defaults: 8 attempts, backoff from 100 ms
  auto p = FailoverPipeline::create(opener(s), o);
  ASSERT_TRUE(p.ok());
  std::vector<float> logits;
  const std::vector<int32_t> oversized((*p)->max_batch() + 1, 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = (*p)->forward(oversized, logits);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(s.open_attempts, 1);      // no re-opening
  EXPECT_EQ((*p)->failovers(), 0u);
  EXPECT_LT(ms, 50);                  // no backoff sleep (the first would be 100 ms)
  // The pipeline is still usable, and the refused call is not part of the session.
  EXPECT_EQ(generate(**p, kPrompt, 10), no_fault_output(10));
  EXPECT_EQ(s.calls.size(), 1u);
}

TEST(Failover, RetryableCodesAreRetriedOthersAreNot) {
  for (ErrorCode code : {ErrorCode::Unavailable, ErrorCode::DeadlineExceeded, ErrorCode::ResourceExhausted})
    EXPECT_TRUE(is_retryable(code)) << to_string(code);
  for (ErrorCode code : {ErrorCode::Internal, ErrorCode::InvalidArgument, ErrorCode::NotFound, ErrorCode::AlreadyExists,
                         ErrorCode::PermissionDenied, ErrorCode::Corruption, ErrorCode::Cancelled})
    EXPECT_FALSE(is_retryable(code)) << to_string(code);

  // A node that runs out of time or sessions: failed over, as a lost one.
  for (ErrorCode code : {ErrorCode::DeadlineExceeded, ErrorCode::ResourceExhausted}) {
    Shared s;
    s.fail_after[1] = 3;
    s.failure = code;
    auto p = FailoverPipeline::create(opener(s), quick(3));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(generate(**p, kPrompt, 10), no_fault_output(10)) << to_string(code);
    EXPECT_EQ((*p)->failovers(), 1u) << to_string(code);
  }

  // Corrupt data from the chain: the call fails with it, nothing is re-opened.
  Shared corrupt;
  corrupt.fail_after[1] = 2;
  corrupt.failure = ErrorCode::Corruption;
  auto p = FailoverPipeline::create(opener(corrupt), quick(3));
  ASSERT_TRUE(p.ok());
  std::vector<float> logits;
  const int32_t t[1] = {1};
  EXPECT_TRUE((*p)->forward(t, logits).ok());
  EXPECT_TRUE((*p)->forward(t, logits).ok());
  auto r = (*p)->forward(t, logits);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Corruption);
  EXPECT_EQ(corrupt.open_attempts, 1);

  // A failover that meets a non-retryable failure (the new route refused as invalid) stops there.
  Shared refused;
  refused.fail_after[1] = 2;
  refused.refuse_from = 2;
  refused.refusal = ErrorCode::PermissionDenied;
  auto q = FailoverPipeline::create(opener(refused), quick(5));
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE((*q)->forward(t, logits).ok());
  EXPECT_TRUE((*q)->forward(t, logits).ok());
  auto f = (*q)->forward(t, logits);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, ErrorCode::PermissionDenied);
  EXPECT_EQ(refused.open_attempts, 2);  // the first opening and one attempt, not five

  // The first opening likewise.
  Shared invalid;
  invalid.refuse_from = 1;
  invalid.refusal = ErrorCode::InvalidArgument;
  auto o = FailoverPipeline::create(opener(invalid), quick(5));
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(invalid.open_attempts, 1);
}

}  // namespace
}  // namespace omni::swarm
