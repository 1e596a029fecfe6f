// FailoverPipeline with fake pipelines: a failure mid-session must give exactly the logits of a
// session without one, and the replay must repeat the original calls batch by batch.
#include <gtest/gtest.h>

#include <memory>

#include "swarm/failover.h"

namespace omni::swarm {
namespace {

// A deterministic "model": logits depend on every token seen so far and on how they were batched
// (as real rounding does), so a replay in other batches would show.
struct Shared {
  int opened = 0;
  int fail_after_calls = -1;   // the pipeline opened as number `fail_pipeline` fails after this many calls
  int fail_pipeline = 1;
  int refuse_opens = 0;        // this many opens fail (a route to a dead node) before one succeeds
  std::vector<std::vector<std::vector<int32_t>>> calls;  // per pipeline
};

class FakePipeline final : public net::Pipeline {
 public:
  FakePipeline(Shared& s, int index) : s_(s), index_(index) {}
  Result<void> forward(std::span<const int32_t> tokens, std::vector<float>& logits) override {
    if (index_ == s_.fail_pipeline && s_.fail_after_calls >= 0 && calls_ >= s_.fail_after_calls)
      return Error{"node 127.0.0.1:1 lost"};
    ++calls_;
    s_.calls[index_ - 1].emplace_back(tokens.begin(), tokens.end());
    for (int32_t t : tokens) state_ = state_ * 1000003u + static_cast<uint32_t>(t) + 1;
    state_ = state_ * 31u + static_cast<uint32_t>(tokens.size());  // batch shape matters
    logits.assign(8, 0.f);
    for (int i = 0; i < 8; ++i) logits[i] = static_cast<float>((state_ >> (i * 4)) & 15);
    return {};
  }
  size_t max_batch() const override { return 4; }
  std::string summary() const override { return "fake"; }

 private:
  Shared& s_;
  int index_;
  int calls_ = 0;
  uint32_t state_ = 17;
};

FailoverPipeline::Opener opener(Shared& s) {
  return [&s]() -> Result<std::unique_ptr<net::Pipeline>> {
    if (s.refuse_opens > 0 && s.opened > 0) {
      --s.refuse_opens;
      return Error{"node 127.0.0.1:2 unreachable"};
    }
    ++s.opened;
    s.calls.emplace_back();
    return std::unique_ptr<net::Pipeline>(new FakePipeline(s, s.opened));
  };
}

// Greedy generation of n tokens after a prompt, as omni run does it.
std::vector<int32_t> generate(net::Pipeline& p, std::vector<int32_t> prompt, int n) {
  std::vector<float> logits;
  for (size_t i = 0; i < prompt.size(); i += p.max_batch()) {
    std::span<const int32_t> b(prompt.data() + i, std::min(p.max_batch(), prompt.size() - i));
    EXPECT_TRUE(p.forward(b, logits).ok());
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

TEST(Failover, OutputEqualsTheNoFaultOutput) {
  Shared clean;
  auto p0 = FailoverPipeline::create(opener(clean), 3, {});
  ASSERT_TRUE(p0.ok());
  const auto expected = generate(**p0, kPrompt, 20);

  for (int fail_at : {0, 1, 2, 3, 7, 15}) {
    Shared s;
    s.fail_after_calls = fail_at;
    auto p = FailoverPipeline::create(opener(s), 3, {});
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(generate(**p, kPrompt, 20), expected) << "failure after " << fail_at << " calls";
    EXPECT_EQ((*p)->failovers(), 1u);
    ASSERT_EQ(s.calls.size(), 2u);
    // The new pipeline saw the same calls as the old one, then continued.
    ASSERT_GE(s.calls[1].size(), s.calls[0].size());
    for (size_t i = 0; i < s.calls[0].size(); ++i) EXPECT_EQ(s.calls[1][i], s.calls[0][i]);
  }
}

TEST(Failover, RetriesUnreachableRoutesThenGivesUp) {
  Shared s;
  s.fail_after_calls = 4;
  s.refuse_opens = 2;
  auto p = FailoverPipeline::create(opener(s), 4, {});
  ASSERT_TRUE(p.ok());
  Shared clean;
  auto p0 = FailoverPipeline::create(opener(clean), 3, {});
  EXPECT_EQ(generate(**p, kPrompt, 10), generate(**p0, kPrompt, 10));

  Shared hopeless;
  hopeless.fail_after_calls = 2;
  hopeless.refuse_opens = 100;
  auto q = FailoverPipeline::create(opener(hopeless), 3, {});
  ASSERT_TRUE(q.ok());
  std::vector<float> logits;
  const int32_t t[1] = {1};
  EXPECT_TRUE((*q)->forward(t, logits).ok());
  EXPECT_TRUE((*q)->forward(t, logits).ok());
  auto r = (*q)->forward(t, logits);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("giving up after 3"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace omni::swarm
