// NodeRuntime in process, on 127.0.0.1: nodes started from a model file answer info over the
// protocol and compute, as a chain, the logits a local run computes; a node started from a model
// CID fetches its shards from another runtime that shares the file; stop() lets an open session
// finish first; a node that chose its blocks in a swarm moves when the swarm loses a block's only
// server; a joining node does not believe a fake record for a dead address; one node per data
// directory; bad options give errors with the right code.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <mutex>
#include <span>
#include <thread>

#include "kernels/thread_pool.h"
#include "model/model.h"
#include "net/identity.h"
#include "net/node_info.h"
#include "net/pipeline.h"
#include "proto/node.capnp.h"
#include "store/blob_store.h"
#include "store/shard.h"
#include "swarm/dht_directory.h"
#include "swarm/node_profile.h"
#include "swarm/node_runtime.h"
#include "swarm/probe.h"
#include "swarm/provider_fetch.h"
#include "swarm/provider_record.h"
#include "swarm/record.h"

namespace omni::swarm {
namespace {

const std::string kModel = std::string(OMNI_SHARED_DIR) + "/models/synth-llama-q8_0.gguf";  // 4 blocks

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/omni-node-runtime-XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Lines a runtime logs, for the assertions and for the failure messages.
struct Log {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex);
      lines.push_back(line);
    };
  }
  bool has(const std::string& what) {
    std::lock_guard lock(mutex);
    for (const auto& l : lines)
      if (l.find(what) != std::string::npos) return true;
    return false;
  }
  std::string all() {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
};

NodeRuntimeOptions options(const std::string& model, Span blocks, const std::string& data_dir) {
  NodeRuntimeOptions o;
  o.model = model;
  o.blocks = blocks;
  o.listen = "127.0.0.1:0";
  o.data_dir = data_dir;
  o.node.threads = 1;
  o.max_kv_mib = 64;
  return o;
}

net::PeerAddress address_of(const NodeRuntime& node) {
  auto a = net::parse_peer_address(node.peer_id() + "@" + node.address());
  EXPECT_TRUE(a.ok());
  return *a;
}

net::NodeDescription info_of(const NodeRuntime& node) {
  auto client = net::Identity::generate();
  EXPECT_TRUE(client.ok());
  auto probed = probe_nodes({address_of(node)}, *client, 5000);
  EXPECT_EQ(probed.size(), 1u);
  EXPECT_TRUE(probed[0].ok) << probed[0].error;
  return probed[0].info;
}

const std::vector<int32_t> kPrompt{1, 15043, 29892, 590};
const std::vector<int32_t> kTokens{450, 4996, 17354};

// Each step's logits: the prompt, then one token at a time.
std::vector<std::vector<float>> run(net::Pipeline& pipeline) {
  std::vector<std::vector<float>> out;
  std::vector<float> logits;
  auto r = pipeline.forward(kPrompt, logits);
  EXPECT_TRUE(r.ok()) << r.error().message;
  out.push_back(logits);
  for (int32_t t : kTokens) {
    r = pipeline.forward(std::span<const int32_t>(&t, 1), logits);
    EXPECT_TRUE(r.ok()) << r.error().message;
    out.push_back(logits);
  }
  return out;
}

std::vector<std::vector<float>> run_local(const model::Model& model, kernels::ThreadPool& pool) {
  auto p = net::make_local_pipeline(model, 64, pool);
  EXPECT_TRUE(p.ok());
  return run(**p);
}

Result<std::unique_ptr<net::Pipeline>> open_remote(const model::Model& model, std::vector<net::PeerAddress> peers,
                                                   const std::string& client_dir, kernels::ThreadPool& pool) {
  net::RemoteOptions o;
  o.peers = std::move(peers);
  o.encoding = net::HiddenEncoding::F32;
  o.topology = net::Topology::Chain;
  o.data_dir = client_dir;
  return net::make_remote_pipeline(model, o, 64, pool);
}

class NodeRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }
  void SetUp() override {
    auto m = model::Model::load(kModel);
    ASSERT_TRUE(m.ok()) << m.error().message;
    model_ = std::move(*m);
  }
  // A bootstrap DHT node on loopback for a test swarm; returns its "127.0.0.1:PORT".
  std::string start_bootstrap() {
    DhtOptions boot_options;
    boot_options.bind_host = "127.0.0.1";
    auto boot = DhtDirectory::start(boot_options);
    EXPECT_TRUE(boot.ok()) << boot.error().message;
    if (!boot.ok()) return "";
    bootstrap_ = std::move(*boot);
    return "127.0.0.1:" + std::to_string(bootstrap_->bound_port());
  }

  TempDir tmp_;
  std::unique_ptr<model::Model> model_;
  kernels::ThreadPool pool_{1};
  std::unique_ptr<DhtDirectory> bootstrap_;
};

TEST_F(NodeRuntimeTest, FileNodesAnswerInfoAndComputeAsALocalRun) {
  Log log_a, log_b;
  auto oa = options(kModel, {0, 2}, tmp_.path + "/a");
  oa.log = log_a.sink();
  std::vector<NodeEndpoint> listening;
  oa.on_listening = [&](const NodeEndpoint& e) { listening.push_back(e); };
  auto a = NodeRuntime::start(oa);
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto ob = options(kModel, {2, 4}, tmp_.path + "/b");
  ob.log = log_b.sink();
  auto b = NodeRuntime::start(ob);
  ASSERT_TRUE(b.ok()) << b.error().message;

  ASSERT_EQ(listening.size(), 1u);
  EXPECT_EQ(listening[0].peer_id, (*a)->peer_id());
  EXPECT_EQ(listening[0].address, (*a)->address());
  EXPECT_EQ(listening[0].blocks.begin, 0u);
  EXPECT_EQ(listening[0].blocks.end, 2u);
  EXPECT_NE((*a)->peer_id(), (*b)->peer_id());

  const net::ModelIdentity local = net::identify_model(*model_).value();
  const net::NodeDescription info = info_of(**b);
  EXPECT_EQ(info.peer_id, (*b)->peer_id());
  EXPECT_EQ(info.block_begin, 2u);
  EXPECT_EQ(info.block_end, 4u);
  EXPECT_EQ(info.model.cid, local.cid);
  EXPECT_EQ(info.model.n_layer, model_->config().n_layer);
  EXPECT_EQ((*b)->model_identity().cid, local.cid);

  const auto expected = run_local(*model_, pool_);
  {
    auto remote = open_remote(*model_, {address_of(**b), address_of(**a)}, tmp_.path + "/client", pool_);
    ASSERT_TRUE(remote.ok()) << remote.error().message;
    EXPECT_EQ(run(**remote), expected);
  }
  (*a)->stop();
  (*b)->stop();
  EXPECT_TRUE((*a)->wait().ok());
  EXPECT_TRUE((*b)->wait().ok());
}

TEST_F(NodeRuntimeTest, CidNodeFetchesItsShardsFromASharingRuntime) {
  Log log_a, log_b;
  auto oa = options(kModel, {0, 2}, tmp_.path + "/a");
  oa.share = true;
  oa.store_dir = tmp_.path + "/store-a";
  oa.log = log_a.sink();
  auto a = NodeRuntime::start(oa);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE((*a)->model_cid().has_value());
  EXPECT_TRUE(log_a.has("sharing model " + (*a)->model_cid()->to_string())) << log_a.all();
  // The file's identity is the CID its shards have, hashed at start and cached in the data dir.
  EXPECT_EQ((*a)->model_identity().cid, *(*a)->model_cid());
  EXPECT_TRUE(log_a.has("content hashed")) << log_a.all();

  auto ob = options((*a)->model_cid()->to_string(), {2, 4}, tmp_.path + "/b");
  ob.store_dir = tmp_.path + "/store-b";
  ob.peers = (*a)->peer_id() + "@" + (*a)->address();
  ob.log = log_b.sink();
  bool progress_done = false;
  ob.fetch_progress = [&](const store::FetchProgress&, bool done) { progress_done = progress_done || done; };
  auto b = NodeRuntime::start(ob);
  ASSERT_TRUE(b.ok()) << b.error().message << "\n" << log_b.all();
  EXPECT_TRUE(log_b.has("fetched ")) << log_b.all();
  EXPECT_TRUE(progress_done);
  EXPECT_EQ((*b)->model_cid(), (*a)->model_cid());
  // The node from shards announces the source file's identity, so it chains with file nodes.
  const net::ModelIdentity local = net::identify_model(*model_).value();
  EXPECT_EQ((*b)->model_identity().cid, local.cid);
  EXPECT_EQ((*b)->model_identity().file_size, local.file_size);
  EXPECT_EQ(info_of(**b).model.cid, local.cid);

  const auto expected = run_local(*model_, pool_);
  {
    auto remote = open_remote(*model_, {address_of(**a), address_of(**b)}, tmp_.path + "/client", pool_);
    ASSERT_TRUE(remote.ok()) << remote.error().message;
    EXPECT_EQ(run(**remote), expected);
  }

  // Restarted from the same store: the shards are there, no peer needed.
  b->reset();
  ob.peers.clear();
  Log log_c;
  ob.log = log_c.sink();
  auto c = NodeRuntime::start(ob);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(log_c.has("fetched ")) << log_c.all();
}

// fetch_from_providers takes each shard from the providers whose records say they hold it: a record
// for a dead address costs a skipped peer, a shard nobody holds is NotFound (bounded wait), and a
// model nobody provides too.
TEST_F(NodeRuntimeTest, FetchFromProvidersTakesEachShardFromItsHolders) {
  auto oa = options(kModel, {0, 2}, tmp_.path + "/a");
  oa.share = true;
  oa.store_dir = tmp_.path + "/store-a";
  auto a = NodeRuntime::start(oa);
  ASSERT_TRUE(a.ok()) << a.error().message;
  const store::Cid cid = *(*a)->model_cid();
  auto key_a = net::Identity::load_or_create(tmp_.path + "/a");
  auto key_dead = net::Identity::generate();
  ASSERT_TRUE(key_a.ok() && key_dead.ok());
  // The same manifest as node a's (its store is locked by the node): the file sharded again.
  auto scratch = store::BlobStore::open(tmp_.path + "/store-m");
  ASSERT_TRUE(scratch.ok());
  auto sharded = store::shard_model(kModel, **scratch);
  ASSERT_TRUE(sharded.ok());
  ASSERT_EQ(sharded->model, cid);
  const store::Manifest* manifest = &sharded->manifest;
  const size_t n = manifest->shards.size();
  size_t head = n;
  for (size_t i = 0; i < n; ++i)
    if (manifest->shards[i].role == store::ShardRole::Head) head = i;
  ASSERT_LT(head, n);

  MemoryDirectory dir;
  const int64_t now = unix_now_ms();
  auto publish = [&](const net::Identity& key, const std::string& address, std::vector<bool> shards) {
    ProviderRecord r;
    r.peer_id = key.peer_id();
    r.addresses = {address};
    r.model_cid = cid.to_string();
    r.shards = std::move(shards);
    r.issued_ms = now, r.expires_ms = now + 60000, r.seq = 1;
    auto bytes = sign_provider_record(r, key);
    ASSERT_TRUE(bytes.ok());
    ASSERT_TRUE(dir.provide(r.model_cid, r.peer_id, std::move(*bytes)).ok());
  };
  std::vector<bool> all_but_head(n, true);
  all_but_head[head] = false;
  publish(*key_a, (*a)->address(), all_but_head);
  std::vector<bool> block1(n, false);
  block1[manifest->block(1) - manifest->shards.data()] = true;
  publish(*key_dead, "127.0.0.1:1", block1);

  Log log;
  ProviderFetchOptions po;
  po.fetch.log = log.sink();
  po.lookup_wait_ms = 600;
  auto st = store::BlobStore::open(tmp_.path + "/store-c");
  ASSERT_TRUE(st.ok());
  auto fetched = fetch_from_providers(**st, dir, cid, {.block_begin = 0, .block_end = 2, .embeddings = false, .head = false}, po);
  ASSERT_TRUE(fetched.ok()) << fetched.error().message << "\n" << log.all();
  EXPECT_EQ(fetched->cid(), cid);
  EXPECT_TRUE((*st)->has(cid));
  EXPECT_TRUE((*st)->has(manifest->block(0)->cid));
  EXPECT_TRUE((*st)->has(manifest->block(1)->cid));
  EXPECT_EQ((*st)->list().size(), 3u);  // manifest, blocks 0 and 1: nothing else
  const std::string of = " of model " + cid.to_string();
  EXPECT_TRUE(log.has("fetching block 0" + of + " from 1 provider(s)")) << log.all();  // a alone
  EXPECT_TRUE(log.has("fetching block 1" + of + " from 2 provider(s)")) << log.all();  // a and the dead one
  EXPECT_TRUE(log.has("skipping peer")) << log.all();

  const auto t0 = std::chrono::steady_clock::now();
  auto no_head = fetch_from_providers(**st, dir, cid, {.block_begin = 0, .block_end = 0, .embeddings = false, .head = true}, po);
  ASSERT_FALSE(no_head.ok());
  EXPECT_TRUE(no_head.error().is(ErrorCode::NotFound)) << no_head.error().message;
  EXPECT_NE(no_head.error().message.find("head"), std::string::npos) << no_head.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));

  const std::string other = "nothing";
  auto nobody = fetch_from_providers(**st, dir, store::Cid::of({reinterpret_cast<const uint8_t*>(other.data()), other.size()}),
                                     {}, po);
  ASSERT_FALSE(nobody.ok());
  EXPECT_TRUE(nobody.error().is(ErrorCode::NotFound)) << nobody.error().message;
}

TEST_F(NodeRuntimeTest, StopLetsAnOpenSessionFinish) {
  auto o = options(kModel, {0, 4}, tmp_.path + "/a");
  o.drain_timeout_s = 60;
  Log log;
  o.log = log.sink();
  auto node = NodeRuntime::start(o);
  ASSERT_TRUE(node.ok()) << node.error().message;
  auto remote = open_remote(*model_, {address_of(**node)}, tmp_.path + "/client", pool_);
  ASSERT_TRUE(remote.ok()) << remote.error().message;
  std::vector<float> logits;
  ASSERT_TRUE((*remote)->forward(kPrompt, logits).ok());

  (*node)->stop();
  // The session still computes while the node drains...
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto r = (*remote)->forward(std::span<const int32_t>(&kTokens[0], 1), logits);
  EXPECT_TRUE(r.ok()) << r.error().message;
  // ...and once the client closes it the node stops, long before the drain timeout.
  const auto t0 = std::chrono::steady_clock::now();
  remote->reset();
  EXPECT_TRUE((*node)->wait().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_TRUE(log.has("stopping: waiting for 1 open session(s) to end")) << log.all();
  // The port is closed.
  auto client = net::Identity::generate();
  ASSERT_TRUE(client.ok());
  EXPECT_FALSE(probe_nodes({address_of(**node)}, *client, 2000)[0].ok);
}

TEST_F(NodeRuntimeTest, StopFromAnotherThreadAndTwice) {
  auto node = NodeRuntime::start(options(kModel, {0, 1}, tmp_.path + "/a"));
  ASSERT_TRUE(node.ok()) << node.error().message;
  std::thread stopper([&] { (*node)->stop(); });
  stopper.join();
  (*node)->stop();
  EXPECT_TRUE((*node)->wait().ok());
}

TEST_F(NodeRuntimeTest, BadOptionsAreErrorsWithTheirCode) {
  const std::string dir = tmp_.path + "/a";
  auto code_of = [](const NodeRuntimeOptions& o) {
    auto r = NodeRuntime::start(o);
    EXPECT_FALSE(r.ok());
    return r.ok() ? ErrorCode::Internal : r.error().code;
  };
  EXPECT_EQ(code_of(options("", {0, 1}, dir)), ErrorCode::InvalidArgument);
  EXPECT_EQ(code_of(options(kModel, {0, 9}, dir)), ErrorCode::InvalidArgument);
  EXPECT_EQ(code_of(options(kModel, {2, 2}, dir)), ErrorCode::InvalidArgument);
  auto no_blocks = options(kModel, {0, 1}, dir);
  no_blocks.blocks.reset();
  EXPECT_EQ(code_of(no_blocks), ErrorCode::InvalidArgument);
  auto bad_listen = options(kModel, {0, 1}, dir);
  bad_listen.listen = "nowhere";
  EXPECT_EQ(code_of(bad_listen), ErrorCode::InvalidArgument);
  auto bad_relay = options(kModel, {0, 1}, dir);
  bad_relay.relay = "not a relay";
  EXPECT_EQ(code_of(bad_relay), ErrorCode::InvalidArgument);
  EXPECT_EQ(code_of(options(tmp_.path + "/no-such.gguf", {0, 1}, dir)), ErrorCode::NotFound);

  // A CID: its shards are not in the store, and there is no peer, or none reachable.
  const std::string cid = store::Cid::of(std::vector<uint8_t>{1, 2, 3}).to_string();
  auto no_peers = options(cid, {0, 1}, dir);
  no_peers.store_dir = tmp_.path + "/store";
  EXPECT_EQ(code_of(no_peers), ErrorCode::NotFound);
  auto unreachable = no_peers;
  unreachable.peers = "127.0.0.1:1";
  unreachable.fetch_timeout_s = 2;
  EXPECT_EQ(code_of(unreachable), ErrorCode::Unavailable);
  auto malformed = no_peers;
  malformed.peers = "no port";
  EXPECT_EQ(code_of(malformed), ErrorCode::InvalidArgument);
}

// --max-memory-mib caps what given blocks may take (their tensors, the embeddings with block 0, the
// KV budget): a cap a MiB short of that refuses to start, with the reason; a cap that holds it starts.
TEST_F(NodeRuntimeTest, GivenBlocksMustFitTheMemoryCap) {
  uint64_t weights = 0;  // blocks 0 and 1 and the token embeddings, from the GGUF index
  for (const auto& t : model_->file().tensors())
    if (t.name.rfind("blk.0.", 0) == 0 || t.name.rfind("blk.1.", 0) == 0 || t.name == "token_embd.weight")
      weights += t.n_bytes;
  const uint64_t need_mib = (weights + (1u << 20) - 1) / (1u << 20) + 1;  // + 1 MiB of KV
  ASSERT_EQ(range_bytes(footprint_of(*model_), Span{0, 2}, 1u << 20), weights + (1u << 20));

  auto o = options(kModel, {0, 2}, tmp_.path + "/a");
  o.max_kv_mib = 1;
  o.swarm.max_memory_mib = need_mib - 1;
  auto refused = NodeRuntime::start(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::ResourceExhausted) << refused.error().message;
  EXPECT_NE(refused.error().message.find("blocks 0:2 need"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("--max-memory-mib"), std::string::npos) << refused.error().message;

  o.swarm.max_memory_mib = need_mib;
  auto started = NodeRuntime::start(o);
  ASSERT_TRUE(started.ok()) << started.error().message;
  EXPECT_EQ((*started)->blocks().end, 2u);
  started->reset();

  // The same for a node started from the model's CID: its manifest's shard sizes count.
  auto sharing = options(kModel, {2, 4}, tmp_.path + "/s");
  sharing.share = true;
  sharing.store_dir = tmp_.path + "/store-s";
  auto s = NodeRuntime::start(sharing);
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto from_cid = options((*s)->model_cid()->to_string(), {0, 2}, tmp_.path + "/c");
  from_cid.store_dir = tmp_.path + "/store-c";
  from_cid.peers = (*s)->peer_id() + "@" + (*s)->address();
  from_cid.max_kv_mib = 1;
  from_cid.swarm.max_memory_mib = 1;
  auto cid_refused = NodeRuntime::start(from_cid);
  ASSERT_FALSE(cid_refused.ok());
  EXPECT_EQ(cid_refused.error().code, ErrorCode::ResourceExhausted) << cid_refused.error().message;
  // Now the manifest is in its store: a second start refuses before fetching anything.
  Log log_again;
  from_cid.log = log_again.sink();
  auto again = NodeRuntime::start(from_cid);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::ResourceExhausted) << again.error().message;
  EXPECT_FALSE(log_again.has("fetched ")) << log_again.all();
}

// Two nodes on one data directory would share a peer id: the second is refused, naming --data-dir;
// another directory is fine, and the directory is free again once the first node stops.
TEST_F(NodeRuntimeTest, OneNodePerDataDirectory) {
  const std::string dir = tmp_.path + "/shared";
  auto first = NodeRuntime::start(options(kModel, {0, 2}, dir));
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = NodeRuntime::start(options(kModel, {2, 4}, dir));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::AlreadyExists) << second.error().message;
  EXPECT_NE(second.error().message.find("--data-dir"), std::string::npos) << second.error().message;
  auto other = NodeRuntime::start(options(kModel, {2, 4}, tmp_.path + "/other"));
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_NE((*other)->peer_id(), (*first)->peer_id());
  first->reset();
  Log log_again;
  auto o_again = options(kModel, {2, 4}, dir);
  o_again.log = log_again.sink();
  auto again = NodeRuntime::start(o_again);
  EXPECT_TRUE(again.ok()) << again.error().message;
  // A restart on the same file and data directory takes the model's CID from the cache.
  EXPECT_FALSE(log_again.has("content hashed")) << log_again.all();
}

// A fake record, validly signed by its own key, for a dead address claims block 3; X serves 0:3.
// Z (one block, no jitter) must not believe the record: it probes, finds nobody there, and takes
// block 3 (believing the record, every block would look served and Z would take block 0).
TEST_F(NodeRuntimeTest, AJoiningNodeTakesTheBlockAFakeRecordClaims) {
  const std::string bootstrap = start_bootstrap();
  ASSERT_FALSE(bootstrap.empty());
  Log log_x, log_z;
  auto swarm_options = [&](const std::string& name, std::optional<Span> blocks, Log& log) {
    auto o = options(kModel, {0, 1}, tmp_.path + "/" + name);
    o.blocks = blocks;
    o.swarm.bootstrap = {bootstrap};
    o.swarm.max_blocks = 1;
    o.swarm.max_memory_mib = 4096;
    o.swarm.join_jitter_ms = 0;
    o.swarm.rebalance_interval_s = 0;
    o.log = log.sink();
    return o;
  };
  auto x = NodeRuntime::start(swarm_options("x", Span{0, 3}, log_x));
  ASSERT_TRUE(x.ok()) << x.error().message;

  auto liar = net::Identity::generate();
  ASSERT_TRUE(liar.ok());
  const net::ModelIdentity id = net::identify_model(*model_).value();
  NodeRecord fake;
  fake.peer_id = liar->peer_id();
  fake.addresses = {"127.0.0.1:1"};
  fake.model_id = model_key(id.cid);
  fake.model_name = id.name;
  fake.n_layer = model_->config().n_layer;
  fake.block_begin = 3;
  fake.block_end = 4;
  fake.block_tps = 1e6;
  fake.max_sessions = fake.free_sessions = 8;
  fake.protocol_version = proto::PROTOCOL_VERSION;
  fake.issued_ms = unix_now_ms();
  fake.expires_ms = fake.issued_ms + 60000;
  fake.seq = next_seq(0, fake.issued_ms);
  auto bytes = sign_record(fake, *liar);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  ASSERT_TRUE(bootstrap_->announce(fake.model_id, fake.peer_id, *bytes).ok());
  // Z's read must see X and the fake, or the test would pass by luck.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  size_t listed = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto found = lookup(*bootstrap_, fake.model_id);
    listed = found.ok() ? found->records.size() : 0;
    if (listed == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(listed, 2u) << "X's record and the fake should be in the directory";

  auto z = NodeRuntime::start(swarm_options("z", std::nullopt, log_z));
  ASSERT_TRUE(z.ok()) << z.error().message;
  EXPECT_EQ((*z)->blocks().begin, 3u) << log_z.all();
  EXPECT_EQ((*z)->blocks().end, 4u);
  EXPECT_TRUE(log_z.has("127.0.0.1:1 is not counted")) << log_z.all();
}

// A swarm on loopback: X serves 0:2 and Y 2:4 as told; Z chooses 2 blocks, doubling one half.
// The node serving the other half stops; once its record expires, Z sees those blocks served by
// nobody and moves there, serving them on the same address.
TEST_F(NodeRuntimeTest, ASwarmNodeMovesToBlocksNobodyServes) {
  const std::string bootstrap = start_bootstrap();
  ASSERT_FALSE(bootstrap.empty());
  auto swarm_options = [&](const std::string& name, std::optional<Span> blocks, Log& log) {
    auto o = options(kModel, {0, 1}, tmp_.path + "/" + name);
    o.blocks = blocks;
    o.swarm.bootstrap = {bootstrap};
    o.swarm.max_blocks = 2;
    o.swarm.max_memory_mib = 4096;
    o.swarm.announce_interval_s = 1;
    o.swarm.record_ttl_s = 3;
    o.swarm.rebalance_interval_s = 1;
    o.drain_timeout_s = 5;
    o.log = log.sink();
    return o;
  };
  Log log_x, log_y, log_z;
  auto x = NodeRuntime::start(swarm_options("x", Span{0, 2}, log_x));
  ASSERT_TRUE(x.ok()) << x.error().message;
  auto y = NodeRuntime::start(swarm_options("y", Span{2, 4}, log_y));
  ASSERT_TRUE(y.ok()) << y.error().message;
  auto z = NodeRuntime::start(swarm_options("z", std::nullopt, log_z));
  ASSERT_TRUE(z.ok()) << z.error().message;
  const Span chose = (*z)->blocks();
  ASSERT_EQ(chose.end - chose.begin, 2u) << log_z.all();
  ASSERT_TRUE(chose.begin == 0 || chose.begin == 2) << log_z.all();
  const Span other = chose.begin == 0 ? Span{2, 4} : Span{0, 2};
  // The other half's only server stops: its record is no longer refreshed and expires after 3 s.
  (chose.begin == 0 ? y : x)->reset();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  while ((*z)->blocks().begin != other.begin && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ((*z)->blocks().begin, other.begin) << log_z.all();
  EXPECT_EQ((*z)->blocks().end, other.end);
  EXPECT_TRUE(log_z.has("moved from blocks " + std::to_string(chose.begin) + ":" + std::to_string(chose.end) +
                        " to " + std::to_string(other.begin) + ":" + std::to_string(other.end)))
      << log_z.all();
  const net::NodeDescription info = info_of(**z);
  EXPECT_EQ(info.block_begin, other.begin);
  EXPECT_EQ(info.block_end, other.end);
}

}  // namespace
}  // namespace omni::swarm
