// The blob service between a fetch engine and a serving store, in-process (a Cap'n Proto
// connection over a pipe on the peer's loop thread): chunks larger than one read (maxReadBytes)
// are fetched in pieces of at most that size, and a blob damaged in the serving store is not
// served (the fetch fails that peer, the serving store drops the blob and logs why).
#include <capnp/rpc-twoparty.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "store.capnp.h"
#include "store/fetch.h"
#include "store/service.h"
#include "test_util.h"

namespace omni::store {
namespace {

using testing::ScratchDir;

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<Digest> chunk_hashes(const std::vector<uint8_t>& data, uint32_t chunk) {
  std::vector<Digest> out;
  for (size_t off = 0; off < data.size(); off += chunk)
    out.push_back(sha256({data.data() + off, std::min<size_t>(chunk, data.size() - off)}));
  return out;
}

// Both ends of the connection on the peer's loop: the service's RPC server on one end of a pipe,
// the fetching client on the other.
class PipeLink final : public PeerLink {
 public:
  explicit PipeLink(BlobService& service)
      : pipe_(kj::newTwoWayPipe()),
        server_network_(*pipe_.ends[1], capnp::rpc::twoparty::Side::SERVER),
        server_(capnp::makeRpcServer(server_network_, service.client())),
        client_(*pipe_.ends[0]) {}
  capnp::Capability::Client blobs() override { return client_.bootstrap(); }
  kj::Promise<void> on_disconnect() override { return client_.onDisconnect(); }

 private:
  kj::TwoWayPipe pipe_;
  capnp::TwoPartyVatNetwork server_network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> server_;
  capnp::TwoPartyClient client_;
};

std::shared_ptr<ChunkSource> peer_of(BlobService& service) {
  auto peer = connect_peer("pipe", [&service](kj::AsyncIoContext&) -> kj::Promise<kj::Own<PeerLink>> {
    return kj::Own<PeerLink>(kj::heap<PipeLink>(service));
  });
  EXPECT_TRUE(peer.ok()) << peer.error().message;
  return peer ? *peer : nullptr;
}

TEST(BlobService, ChunksLargerThanOneReadAreFetchedInPieces) {
  ScratchDir serving_dir, fetching_dir;
  auto serving = BlobStore::open(serving_dir.path());
  auto fetching = BlobStore::open(fetching_dir.path());
  ASSERT_TRUE(serving && fetching);
  const uint32_t chunk = 2 * proto::MAX_READ_BYTES;  // 8 MiB: two reads each
  auto data = random_bytes(chunk + chunk / 4, 11);   // one whole chunk and a quarter of one
  auto cid = (*serving)->put(data);
  ASSERT_TRUE(cid);
  BlobService service(**serving);
  {
    Fetcher fetcher(**fetching, {peer_of(service)}, FetchOptions{.window = 2});
    auto r = fetcher.fetch_blob(*cid, data.size(), chunk, chunk_hashes(data, chunk));
    ASSERT_TRUE(r) << r.error().message;
  }
  auto back = (*fetching)->read_all(*cid, data.size());
  ASSERT_TRUE(back);
  EXPECT_TRUE(*back == data);
  // 8 MiB in two reads, the 2 MiB rest in one; none over the limit (the service refuses those).
  EXPECT_EQ(service.reads_served(), 3u);
  EXPECT_EQ(service.bytes_served(), data.size());
}

TEST(BlobService, ABlobDamagedInTheServingStoreIsNotServed) {
  ScratchDir serving_dir, fetching_dir;
  auto serving = BlobStore::open(serving_dir.path());
  auto fetching = BlobStore::open(fetching_dir.path());
  ASSERT_TRUE(serving && fetching);
  const uint32_t chunk = 64 * 1024;
  auto data = random_bytes(4 * chunk, 12);
  auto cid = (*serving)->put(data);
  ASSERT_TRUE(cid);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the modification time moves on
  const std::string path = (*serving)->blob_path(*cid);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3 * chunk + 5);
    f.put(static_cast<char>(data[3 * chunk + 5] ^ 1));
  }
  std::mutex mu;
  std::vector<std::string> logged;
  BlobService service(**serving, [&](const std::string& line) {
    std::lock_guard lock(mu);
    logged.push_back(line);
  });
  {
    Fetcher fetcher(**fetching, {peer_of(service)}, FetchOptions{.window = 2});
    auto r = fetcher.fetch_blob(*cid, data.size(), chunk, chunk_hashes(data, chunk));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::Unavailable) << r.error().message;
    // The first read finds the damage (and the blob is removed); later ones find no blob.
    const bool said = r.error().message.find("blob failed verification at this peer") != std::string::npos ||
                      r.error().message.find("blob not held by this peer") != std::string::npos;
    EXPECT_TRUE(said) << r.error().message;
    EXPECT_EQ(r.error().message.find(serving_dir.path()), std::string::npos) << "a local path went to the peer";
  }
  EXPECT_EQ(service.bytes_served(), 0u);  // not even the chunks that were still intact
  EXPECT_FALSE((*serving)->has(*cid));
  EXPECT_FALSE((*fetching)->has(*cid));
  std::lock_guard lock(mu);
  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged[0].find("not serving blob " + cid->to_string()), std::string::npos) << logged[0];
}

}  // namespace
}  // namespace omni::store
