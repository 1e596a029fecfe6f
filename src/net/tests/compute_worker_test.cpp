// ComputeWorker's batched passes: steps queued while a pass runs share the next one (in the fair
// round's order, within the pass's token bound), a client's huge call does not keep another
// client's step out of the next pass, and a steady-state pass does not allocate.
#include <gtest/gtest.h>
#include <kj/async.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <new>
#include <string>
#include <vector>

#include "base/testing/allocation_counter.h"
#include "model/model.h"
#include "net/compute_worker.h"

using omni::test_support::g_allocations;
using omni::test_support::g_counting;

namespace omni::net {
namespace {

const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";

// What the worker did, in order: which step was prepared in which pass (a pass's prepares all come
// before its completes).
struct Trace {
  int pass = 0;
  bool completing = false;
  int completes = 0;
  std::vector<std::pair<std::string, int>> prepared;  // (step name, pass), reserved up front
};

// A job of `steps` steps of `rows` tokens each on its own session.
class TestStep final : public BatchStep {
 public:
  TestStep(std::string name, model::Session& session, uint32_t steps, uint32_t rows, Trace& trace)
      : name_(std::move(name)), session_(session), steps_(steps), tokens_(rows, 7), trace_(trace) {}
  const model::Session& session() const override { return session_; }
  bool prepare(model::SequenceStep& step) override {
    if (trace_.completing) {
      trace_.completing = false;
      ++trace_.pass;
    }
    trace_.prepared.emplace_back(name_, trace_.pass);
    step.session = &session_;
    step.tokens = tokens_;
    step.output = model::Output::LastHidden;
    step.out = &out_;
    return true;
  }
  uint64_t complete(model::SequenceStep& step, bool prepared) override {
    trace_.completing = true;
    result_ok_ = prepared && step.result.ok();
    return --steps_ == 0 || !result_ok_ ? 0 : tokens_.size();
  }
  bool ok() const { return result_ok_; }

 private:
  std::string name_;
  model::Session& session_;
  uint32_t steps_;
  std::vector<int32_t> tokens_;
  std::vector<float> out_;
  Trace& trace_;
  bool result_ok_ = false;
};

struct Fixture {
  std::unique_ptr<model::Model> model;
  std::vector<std::unique_ptr<model::Session>> sessions;
  Fixture(int n) {
    auto m = model::Model::load(kModel);
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
    model = std::move(*m);
    for (int i = 0; i < n; ++i) sessions.push_back(std::move(*model::Session::create(*model, 0, 2, 1024)));
  }
};

// Holds the worker busy until released, so that what is queued meanwhile waits for one pass.
struct Blocker {
  std::promise<void> started, release;
  kj::Promise<int> done;
  explicit Blocker(ComputeWorker& worker)
      : done(worker.run<int>("blocker", 1, [this] {
          started.set_value();
          release.get_future().wait();
          return 0;
        })) {
    started.get_future().wait();
  }
};

TEST(ComputeWorker, QueuedStepsShareAPassWithinItsTokens) {
  kj::EventLoop loop;
  kj::WaitScope wait(loop);
  Fixture f(6);
  kernels::ThreadPool pool(1);
  Trace trace;
  trace.prepared.reserve(64);
  ComputeWorker worker(16, 8, pool);  // a pass of 8 tokens
  std::vector<std::shared_ptr<TestStep>> steps;
  std::vector<kj::Promise<int>> done;
  {
    Blocker blocker(worker);
    // Six one-token steps of three clients, and a 5-token one: 6 + 5 > 8, so it waits.
    const char* clients[] = {"a", "b", "c", "a", "b", "c"};
    for (int i = 0; i < 6; ++i) {
      const uint32_t rows = i == 5 ? 5 : 1;
      steps.push_back(std::make_shared<TestStep>("s" + std::to_string(i), *f.sessions[i], 1, rows, trace));
      done.push_back(worker.run_batched<int>(clients[i], rows, rows, steps.back(), [] { return 0; }));
    }
    blocker.release.set_value();
    blocker.done.wait(wait);
  }
  for (auto& d : done) d.wait(wait);
  for (auto& s : steps) EXPECT_TRUE(s->ok());
  // The round's order (a turn of 16 tokens covers a client's two steps): a's s0 and s3, b's s1 and
  // s4, c's s2 share a pass of 5 tokens; c's 5-token s5 does not fit and runs next.
  ASSERT_EQ(trace.prepared.size(), 6u);
  const char* order[] = {"s0", "s3", "s1", "s4", "s2"};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(trace.prepared[i], std::make_pair(std::string(order[i]), 0)) << i;
  EXPECT_EQ(trace.prepared[5], std::make_pair(std::string("s5"), 1));
  EXPECT_EQ(worker.outstanding(), 0u);
  EXPECT_EQ(worker.outstanding_cost(), 0u);
}

// A client whose call is huge (many 16-token slices) shares every pass with another client's
// one-token steps: each of those runs in the pass after it is queued, not after the huge call.
TEST(ComputeWorker, AHugeCallDoesNotKeepOthersOutOfThePass) {
  kj::EventLoop loop;
  kj::WaitScope wait(loop);
  Fixture f(2);
  kernels::ThreadPool pool(1);
  Trace trace;
  trace.prepared.reserve(64);
  ComputeWorker worker(16, 512, pool);
  auto huge = std::make_shared<TestStep>("huge", *f.sessions[0], 20, 16, trace);
  auto small = std::make_shared<TestStep>("small", *f.sessions[1], 1, 1, trace);
  kj::Promise<int> huge_done = nullptr, small_done = nullptr;
  {
    Blocker blocker(worker);
    huge_done = worker.run_batched<int>("hostile", 20 * 16, 16, huge, [] { return 0; });
    small_done = worker.run_batched<int>("user", 1, 1, small, [] { return 0; });
    blocker.release.set_value();
    blocker.done.wait(wait);
  }
  small_done.wait(wait);
  huge_done.wait(wait);
  EXPECT_TRUE(small->ok());
  EXPECT_TRUE(huge->ok());
  ASSERT_GE(trace.prepared.size(), 2u);
  EXPECT_EQ(trace.prepared[0], std::make_pair(std::string("huge"), 0));
  EXPECT_EQ(trace.prepared[1], std::make_pair(std::string("small"), 0));  // the same pass
  EXPECT_EQ(trace.prepared.size(), 21u);
}

TEST(ComputeWorker, SteadyStatePassesDoNotAllocate) {
  if (!omni::test_support::kCountsAllocations) GTEST_SKIP() << "allocations are not counted under a sanitizer";
  kj::EventLoop loop;
  kj::WaitScope wait(loop);
  constexpr int kSteps = 4;
  Fixture f(kSteps);
  kernels::ThreadPool pool(1);
  Trace trace;
  trace.prepared.reserve(1024);
  ComputeWorker worker(16, 512, pool);
  // Jobs of 8 one-token steps each from four clients: after the first pass (which grows the
  // worker's scratch and the outputs) the passes are alike. Each later pass is counted from its
  // first prepare to its last complete: gathering the steps, forward_batch and handing out the
  // results. (Queueing a job's next step in the fair queue between passes is not counted: the
  // queue keeps a client's entry only while it has work, so that may allocate.)
  struct Counting final : BatchStep {
    TestStep inner;
    Trace& trace;
    Counting(TestStep s, Trace& t) : inner(std::move(s)), trace(t) {}
    const model::Session& session() const override { return inner.session(); }
    bool prepare(model::SequenceStep& step) override {
      const bool first = trace.completing || trace.prepared.empty();
      const bool ok = inner.prepare(step);
      if (first && trace.pass >= 1) g_counting = true;
      return ok;
    }
    uint64_t complete(model::SequenceStep& step, bool prepared) override {
      const uint64_t next = inner.complete(step, prepared);
      if (++trace.completes % kSteps == 0) g_counting = false;
      return next;
    }
  };
  std::vector<std::shared_ptr<Counting>> steps;
  std::vector<kj::Promise<int>> done;
  {
    Blocker blocker(worker);
    for (int i = 0; i < kSteps; ++i) {
      steps.push_back(std::make_shared<Counting>(TestStep("s" + std::to_string(i), *f.sessions[i], 8, 1, trace), trace));
      done.push_back(worker.run_batched<int>("c" + std::to_string(i), 8, 1, steps.back(), [] { return 0; }));
    }
    g_allocations = 0;
    blocker.release.set_value();
    blocker.done.wait(wait);
  }
  for (auto& d : done) d.wait(wait);
  for (auto& s : steps) EXPECT_TRUE(s->inner.ok());
  EXPECT_EQ(trace.pass, 7);  // 8 passes of the four steps each
  EXPECT_EQ(g_allocations.load(), 0u);
  // The counter counts: a pass whose rows outgrow the scratch allocates.
  auto wide = std::make_shared<Counting>(TestStep("wide", *f.sessions[0], 1, 64, trace), trace);
  auto wide_done = worker.run_batched<int>("c0", 64, 64, wide, [] { return 0; });
  wide_done.wait(wait);
  g_counting = false;
  EXPECT_TRUE(wide->inner.ok());
  EXPECT_GT(g_allocations.load(), 0u);
}

}  // namespace
}  // namespace omni::net
