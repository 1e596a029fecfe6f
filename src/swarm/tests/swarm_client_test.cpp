// The swarm client against real nodes in child processes and an in-memory directory: it routes on
// a restarted node's newest record (whose sequence number started over), does not wait for a
// frozen node's probe once the others cover the model, and when a node of its chain freezes
// mid-generation it fails over within the stall timeout with logits identical to a local run.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "net/node_info.h"
#include "proto/node.capnp.h"
#include "swarm/directory.h"
#include "swarm/record.h"
#include "swarm/swarm_client.h"
#include "swarm/tests/child_node.h"

namespace omni::swarm {
namespace {

using test_support::ChildNode;
using test_support::kModel;

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/omni-swarm-client-XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Signs a record of the node whose key lives in `data_dir` and stores it under `slot`.
void put_record(MemoryDirectory& directory, const model::Model& model, const std::string& data_dir,
                const std::string& address, uint64_t seq, int64_t issued_ms, const std::string& slot,
                uint32_t block_begin = 0, uint32_t block_end = 0, double block_tps = 1000) {
  auto identity = net::Identity::load_or_create(data_dir);
  ASSERT_TRUE(identity.ok());
  const auto id = net::identify_model(model).value();
  NodeRecord r;
  r.peer_id = identity->peer_id();
  r.addresses = {address};
  r.model_id = model_key(id.cid);
  r.model_name = id.name;
  r.n_layer = model.config().n_layer;
  r.block_begin = block_begin;
  r.block_end = block_end ? block_end : r.n_layer;
  r.block_tps = block_tps;
  r.max_sessions = r.free_sessions = 16;
  r.protocol_version = proto::PROTOCOL_VERSION;
  r.issued_ms = issued_ms;
  r.expires_ms = issued_ms + 60000;
  r.seq = seq;
  auto bytes = sign_record(r, *identity);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  directory.inject(r.model_id, slot, *bytes);
}

std::vector<float> run_local(const model::Model& model, kernels::ThreadPool& pool, const std::vector<int32_t>& prompt,
                             const std::vector<int32_t>& tokens) {
  auto p = net::make_local_pipeline(model, 64, pool);
  std::vector<float> logits;
  EXPECT_TRUE((*p)->forward(prompt, logits).ok());
  for (int32_t t : tokens) EXPECT_TRUE((*p)->forward(std::span<const int32_t>(&t, 1), logits).ok());
  return logits;
}

TEST(SwarmClient, NewestRecordFrozenProbeAndStallFailover) {
  TempDir tmp;
  const std::string dir_a = tmp.path + "/a", dir_b = tmp.path + "/b";
  ASSERT_TRUE(net::Identity::load_or_create(dir_a).ok());
  ASSERT_TRUE(net::Identity::load_or_create(dir_b).ok());
  ChildNode a(0, 4, dir_a), b(0, 4, dir_b);  // forked before this process starts any thread
  ASSERT_EQ(a.error(), "");
  ASSERT_EQ(b.error(), "");
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok());
  kernels::ThreadPool pool(1);

  MemoryDirectory directory;
  const int64_t now = unix_now_ms();
  // A's earlier incarnation announced at a port that is dead now, its seq a little ahead of its
  // clock; the running one has announced once (seqs as next_seq makes them).
  put_record(directory, **model, dir_a, "127.0.0.1:1", static_cast<uint64_t>(now - 5000) + 9, now - 5000, "a-old");
  put_record(directory, **model, dir_a, a.address().host_port(), next_seq(0, now), now, "a-new");
  put_record(directory, **model, dir_b, b.address().host_port(), next_seq(0, now), now, "b");

  std::mutex mutex;
  std::vector<std::string> lines;
  SwarmClientOptions o;
  o.encoding = net::HiddenEncoding::F32;
  o.topology = net::Topology::Direct;
  o.jitter = 0;
  o.stall_ms = 600;
  o.probe_timeout_ms = 10000;
  o.backoff_ms = 10;
  o.lookup_wait_ms = 0;
  o.log = [&](const std::string& line) {
    std::lock_guard lock(mutex);
    lines.push_back(line);
  };
  auto logged = [&](const std::string& what) {
    std::lock_guard lock(mutex);
    for (const auto& l : lines)
      if (l.find(what) != std::string::npos) return true;
    return false;
  };

  b.signal(SIGSTOP);
  const auto t0 = std::chrono::steady_clock::now();
  auto pipeline = make_swarm_pipeline(**model, directory, o, 64, pool);
  const double open_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  EXPECT_LT(open_s, 5.0) << [&] {  // not the frozen node's 10 s probe timeout
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    return all;
  }();
  EXPECT_TRUE(logged("@" + a.address().host_port())) << "the route should use A's newest address";
  b.signal(SIGCONT);

  const std::vector<int32_t> prompt{1, 15043, 29892, 590};
  const std::vector<int32_t> tokens{450, 4996, 17354, 1701, 29916, 432};
  std::vector<float> logits;
  ASSERT_TRUE((*pipeline)->forward(prompt, logits).ok());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i == 3) a.signal(SIGSTOP);  // A freezes mid-generation: B takes over
    auto r = (*pipeline)->forward(std::span<const int32_t>(&tokens[i], 1), logits);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  a.signal(SIGCONT);
  EXPECT_TRUE(logged(a.address().host_port() + " stalled"));
  EXPECT_TRUE(logged("failover 1: recovered"));
  EXPECT_EQ(logits, run_local(**model, pool, prompt, tokens));
}

// Records that lie: F, signed by its own key, claims block 3 at 10^8 tokens/s at a dead address;
// L is alive and serves the whole model but claims 10^8 tokens/s (A, as alive, claims 1000).
// No route goes through F, and sessions opened one after another (each kept open) do not all go
// to L: its claim counts as 4x the median at most, and the sessions it holds make it dearer.
TEST(SwarmClient, LyingRecordsDrawNoRouteOrNotAll) {
  TempDir tmp;
  const std::string dir_a = tmp.path + "/a", dir_l = tmp.path + "/l", dir_f = tmp.path + "/f";
  ASSERT_TRUE(net::Identity::load_or_create(dir_a).ok());
  ASSERT_TRUE(net::Identity::load_or_create(dir_l).ok());
  ChildNode a(0, 4, dir_a), l(0, 4, dir_l);  // forked before this test starts any thread
  ASSERT_EQ(a.error(), "");
  ASSERT_EQ(l.error(), "");
  auto model = model::Model::load(kModel);
  ASSERT_TRUE(model.ok());
  kernels::ThreadPool pool(1);
  MemoryDirectory directory;
  const int64_t now = unix_now_ms();
  put_record(directory, **model, dir_a, a.address().host_port(), next_seq(0, now), now, "a");
  put_record(directory, **model, dir_l, l.address().host_port(), next_seq(0, now), now, "l", 0, 4, 1e8);
  put_record(directory, **model, dir_f, "127.0.0.1:1", next_seq(0, now), now, "f", 3, 4, 1e8);

  std::mutex mutex;
  std::vector<std::string> routes, lines;
  SwarmClientOptions o;
  o.encoding = net::HiddenEncoding::F32;
  o.topology = net::Topology::Direct;
  o.jitter = 0;
  o.stall_ms = 0;
  o.lookup_wait_ms = 0;
  // Routing only: spot checks' sessions would count against the node's 8 per client too.
  o.verify_rate = 0;
  o.verify_first = 0;
  o.log = [&](const std::string& line) {
    std::lock_guard lock(mutex);
    lines.push_back(line);
    if (line.rfind("route:", 0) == 0) routes.push_back(line);
  };
  auto all = [&] {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  };
  // A remote pipeline keeps its event loop on the thread that opened it: one thread per session,
  // each held open until all are.
  const std::vector<int32_t> prompt{1, 15043, 29892, 590};
  std::condition_variable changed;
  int opened = 0;
  bool finish = false;
  std::vector<std::thread> sessions;
  std::vector<std::string> errors(8);
  for (int i = 0; i < 8; ++i) {
    sessions.emplace_back([&, i] {
      auto pipeline = make_swarm_pipeline(**model, directory, o, 64, pool);
      std::vector<float> logits;
      if (!pipeline)
        errors[i] = pipeline.error().message;
      else if (auto r = (*pipeline)->forward(prompt, logits); !r)
        errors[i] = r.error().message;
      std::unique_lock lock(mutex);
      ++opened;
      changed.notify_all();
      changed.wait(lock, [&] { return finish; });
    });
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return opened == i + 1; });  // the next session sees this one's load
  }
  {
    std::lock_guard lock(mutex);
    finish = true;
  }
  changed.notify_all();
  for (auto& t : sessions) t.join();
  for (const auto& e : errors) ASSERT_EQ(e, "") << all();
  ASSERT_EQ(routes.size(), 8u);
  size_t through_a = 0, through_l = 0;
  for (const auto& r : routes) {
    EXPECT_EQ(r.find("127.0.0.1:1)"), std::string::npos) << r;
    through_a += r.find(a.address().host_port()) != std::string::npos;
    through_l += r.find(l.address().host_port()) != std::string::npos;
  }
  EXPECT_GE(through_a, 1u) << "every session went to the node that claims 10^8 tokens/s";
  EXPECT_GE(through_l, 1u);
}

}  // namespace
}  // namespace omni::swarm
