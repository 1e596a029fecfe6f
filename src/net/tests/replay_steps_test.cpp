// Pipeline::replay_steps (what a failover rebuilds a session's generation steps with): a remote
// pipeline sends the steps as one call whose rows every node sums per token, and the sessions end
// with the caches one-token calls leave: the next step's logits are bit for bit those of a session
// that made every step as a call of its own, on every route and hidden-state encoding, across a
// block split (the second node takes hidden states) and after a rollback.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/pipeline.h"
#include "net/tests/test_node.h"

namespace omni::net {
namespace {

constexpr uint32_t kCtx = 96;
constexpr int kSteps = 12;

const std::vector<int32_t> kPrompt{1, 450, 4996, 17354, 1701, 29916, 432, 17204};

int32_t argmax(const std::vector<float>& logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// The prompt, then kSteps greedy one-token calls: the tokens fed and the last call's logits.
std::vector<int32_t> one_call_per_step(Pipeline& p, std::vector<float>& logits) {
  std::vector<int32_t> fed;
  EXPECT_TRUE(p.forward(kPrompt, logits).ok());
  for (int i = 0; i < kSteps; ++i) {
    const int32_t next[1] = {argmax(logits)};
    fed.push_back(next[0]);
    auto r = p.forward(next, logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
  }
  return fed;
}

// The prompt, the same steps but the last as one replay_steps() call, then the last step.
void replayed(Pipeline& p, const std::vector<int32_t>& fed, std::vector<float>& logits) {
  ASSERT_TRUE(p.forward(kPrompt, logits).ok());
  auto r = p.replay_steps(std::span<const int32_t>(fed).first(fed.size() - 1));
  ASSERT_TRUE(r.ok()) << r.error().message;
  r = p.forward(std::span<const int32_t>(fed).last(1), logits);
  ASSERT_TRUE(r.ok()) << r.error().message;
}

size_t calls_in(const std::string& summary) {
  const size_t at = summary.find(" calls");
  if (at == std::string::npos) return 0;
  const size_t start = summary.rfind(' ', at - 1) + 1;
  return std::stoul(summary.substr(start, at - start));
}

// F16 weights: a prompt batch's sums differ from a single row's, so a replay as a plain batch shows.
class ReplayStepsOn : public ::testing::TestWithParam<std::string> {};

TEST_P(ReplayStepsOn, LeavesTheCachesOfOneCallPerStep) {
  const std::string path = std::string(OMNI_SHARED_DIR) + "/models/" + GetParam();
  auto model = model::Model::load(path);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  auto local = make_local_pipeline(**model, kCtx, pool);
  ASSERT_TRUE(local.ok());
  std::vector<float> local_logits;
  const std::vector<int32_t> fed = one_call_per_step(**local, local_logits);

  auto node = [&](uint32_t begin, uint32_t end) {
    auto o = options(begin, end);
    o.model_path = path;
    return o;
  };
  TestNode n0(node(0, 2)), n1(node(2, 4));
  for (Topology topology : {Topology::Ring, Topology::Chain, Topology::Direct}) {
    for (HiddenEncoding encoding : {HiddenEncoding::F32, HiddenEncoding::F16, HiddenEncoding::Q8}) {
      SCOPED_TRACE(std::string(topology_name(topology)) + ", " + hidden_encoding_name(encoding));
      RemoteOptions o;
      o.peers = {n0.address(), n1.address()};
      o.encoding = encoding;
      o.topology = topology;
      o.call_timeout_s = 60;
      std::vector<float> expected, logits;
      std::vector<int32_t> remote_fed;  // rounding on the wire (F16, Q8) takes its own greedy path
      {  // one remote pipeline at a time: each has its thread's event loop
        auto stepped = make_remote_pipeline(**model, o, kCtx, pool);
        ASSERT_TRUE(stepped.ok()) << stepped.error().message;
        remote_fed = one_call_per_step(**stepped, expected);
        EXPECT_EQ(calls_in((*stepped)->summary()), 1u + kSteps);
      }
      auto replaying = make_remote_pipeline(**model, o, kCtx, pool);
      ASSERT_TRUE(replaying.ok()) << replaying.error().message;
      replayed(**replaying, remote_fed, logits);
      EXPECT_TRUE(logits == expected);
      // F32 hidden states are not rounded on the wire: the local run's bits.
      if (encoding == HiddenEncoding::F32) {
        EXPECT_EQ(remote_fed, fed);
        EXPECT_TRUE(logits == local_logits);
      }
      EXPECT_EQ(calls_in((*replaying)->summary()), 3u) << (*replaying)->summary();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ReplayStepsOn,
                         ::testing::Values("synth-llama-q8_0.gguf", "synth-llama-f16.gguf"),
                         [](const auto& info) { return info.param == "synth-llama-f16.gguf" ? "f16" : "q8_0"; });

// Steps replayed over rolled-back positions (a failover after rejected drafts) start where the
// sessions were rolled back to.
TEST(ReplaySteps, ContinuesAfterARollback) {
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok()) << model.error().message;
  kernels::ThreadPool pool(1);
  auto local = make_local_pipeline(**model, kCtx, pool);
  ASSERT_TRUE(local.ok());
  std::vector<float> expected, logits;
  const std::vector<int32_t> fed = one_call_per_step(**local, expected);

  TestNode n0(options(0, 2)), n1(options(2, 4));
  RemoteOptions o;
  o.peers = {n0.address(), n1.address()};
  o.encoding = HiddenEncoding::F32;
  auto remote = make_remote_pipeline(**model, o, kCtx, pool);
  ASSERT_TRUE(remote.ok()) << remote.error().message;
  ASSERT_TRUE((*remote)->forward(kPrompt, logits).ok());
  ASSERT_TRUE((*remote)->replay_steps(std::vector<int32_t>{7, 8, 9}).ok());
  ASSERT_TRUE((*remote)->rollback(3).ok());
  ASSERT_TRUE((*remote)->replay_steps(std::span<const int32_t>(fed).first(fed.size() - 1)).ok());
  ASSERT_TRUE((*remote)->forward(std::span<const int32_t>(fed).last(1), logits).ok());
  EXPECT_TRUE(logits == expected);
}

}  // namespace
}  // namespace omni::net
