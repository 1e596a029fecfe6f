#include "store/service.h"

#include <capnp/orphan.h>
#include <kj/debug.h>

#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "store.capnp.h"

namespace omni::store {
namespace {

std::string describe(const kj::Exception& e) { return e.getDescription().cStr(); }

Cid parse_cid(capnp::Data::Reader bytes) {
  auto c = Cid::from_binary({bytes.begin(), bytes.size()});
  KJ_REQUIRE(c.ok(), "malformed CID");
  return *c;
}

}  // namespace

struct BlobService::Impl {
  std::mutex mu;
  std::map<Cid, std::unique_ptr<MappedFile>> mapped;  // see the header: kept until the service ends

  const MappedFile* mapping(BlobStore& store, const Cid& cid) {
    std::lock_guard lock(mu);
    auto it = mapped.find(cid);
    if (it != mapped.end()) return it->second.get();
    auto m = store.map(cid);
    if (!m) return nullptr;
    return mapped.emplace(cid, std::make_unique<MappedFile>(std::move(*m))).first->second.get();
  }
};

namespace {

class BlobStoreImpl final : public proto::BlobStore::Server {
 public:
  BlobStoreImpl(store::BlobStore& store, BlobService::Impl& impl, std::atomic<uint64_t>& reads,
                std::atomic<uint64_t>& bytes)
      : store_(store), impl_(impl), reads_(reads), bytes_(bytes) {}

  kj::Promise<void> stat(StatContext context) override {
    auto size = store_.size(parse_cid(context.getParams().getCid()));
    auto results = context.getResults();
    results.setHas(size.ok());
    results.setSize(size ? *size : 0);
    return kj::READY_NOW;
  }

  kj::Promise<void> read(ReadContext context) override {
    auto params = context.getParams();
    const Cid cid = parse_cid(params.getCid());
    const uint64_t offset = params.getOffset();
    const uint32_t length = params.getLength();
    KJ_REQUIRE(length <= proto::MAX_READ_BYTES, "read longer than maxReadBytes", length);
    const MappedFile* blob = impl_.mapping(store_, cid);
    KJ_REQUIRE(blob != nullptr, "blob not held by this peer", cid.to_string());
    KJ_REQUIRE(offset <= blob->size(), "range past the end of the blob");
    const size_t n = static_cast<size_t>(std::min<uint64_t>(length, blob->size() - offset));
    auto results = context.getResults(capnp::MessageSize{8, 1});
    const uint8_t* p = blob->data() + offset;
    if (reinterpret_cast<uintptr_t>(p) % sizeof(capnp::word) == 0) {
      // Chunk offsets are multiples of the chunk size, so this is the normal case: the reply
      // points into the mapping and the bytes are copied once, by the transport.
      auto orphanage = capnp::Orphanage::getForMessageContaining(results);
      results.adoptData(orphanage.referenceExternalData(capnp::Data::Reader(p, n)));
    } else {
      results.setData(capnp::Data::Reader(p, n));
    }
    ++reads_;
    bytes_ += n;
    return kj::READY_NOW;
  }

 private:
  store::BlobStore& store_;
  BlobService::Impl& impl_;
  std::atomic<uint64_t>& reads_;
  std::atomic<uint64_t>& bytes_;
};

// Calls `done` exactly once: with the answer, or with an error if the request is dropped unanswered
// (the connection's event loop shut down).
struct Pending {
  ChunkSource::Done done;
  std::string peer;
  Pending() = default;
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  ~Pending() {
    if (done) done(Error{peer + ": connection closed"});
  }
  void fire(Result<std::vector<uint8_t>> r) {
    auto d = std::move(done);
    done = nullptr;
    d(std::move(r));
  }
};

class RemotePeer final : public ChunkSource {
 public:
  explicit RemotePeer(std::string name) : name_(std::move(name)) {}
  ~RemotePeer() noexcept override {
    if (executor_) {
      try {
        executor_->executeSync([this] { stop_->fulfill(); });
      } catch (const kj::Exception&) {
        // The loop already ended: nothing to stop.
      }
    }
    if (thread_.joinable()) thread_.join();
  }

  std::string name() const override { return name_; }

  void read(const Cid& cid, uint64_t offset, uint32_t length, Done done) override {
    auto pending = std::make_shared<Pending>();  // built in place: a copy would fire on destruction
    pending->done = std::move(done);
    pending->peer = name_;
    try {
      executor_->executeSync([&] {
        auto req = client_->readRequest(capnp::MessageSize{16, 0});
        auto bin = cid.to_binary();
        req.setCid(kj::arrayPtr(bin.data(), bin.size()));
        req.setOffset(offset);
        req.setLength(length);
        tasks_->add(req.send().then(
            [pending](capnp::Response<proto::BlobStore::ReadResults>&& r) {
              auto d = r.getData();
              pending->fire(std::vector<uint8_t>(d.begin(), d.end()));
            },
            [pending, this](kj::Exception&& e) { pending->fire(Error{name_ + ": " + describe(e)}); }));
      });
    } catch (const kj::Exception& e) {
      pending->fire(Error{name_ + ": " + describe(e)});
    }
  }

  Result<void> connect(PeerConnector connector) {
    std::promise<std::string> started;
    auto ready = started.get_future();
    thread_ = std::thread([this, &started, connector = std::move(connector)] {
      bool reported = false;
      try {
        auto io = kj::setupAsyncIo();
        auto link = connector(io).wait(io.waitScope);
        auto client = link->blobs().castAs<proto::BlobStore>();
        client_ = &client;
        struct Errors final : kj::TaskSet::ErrorHandler {
          void taskFailed(kj::Exception&&) override {}  // each task reports through its Pending
        } errors;
        {
          kj::TaskSet tasks(errors);
          tasks_ = &tasks;
          auto paf = kj::newPromiseAndFulfiller<void>();
          stop_ = kj::mv(paf.fulfiller);
          executor_ = kj::getCurrentThreadExecutor().addRef();
          started.set_value("");
          reported = true;
          // Runs until the peer is destroyed; a dropped connection fails the reads in flight.
          paf.promise.wait(io.waitScope);
          tasks_ = nullptr;
        }
        client_ = nullptr;
      } catch (const kj::Exception& e) {
        if (!reported) started.set_value(name_ + ": " + describe(e));
      }
    });
    std::string error = ready.get();
    if (!error.empty()) {
      thread_.join();
      return Error{error};
    }
    return {};
  }

 private:
  std::string name_;
  std::thread thread_;
  kj::Own<const kj::Executor> executor_;
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  proto::BlobStore::Client* client_ = nullptr;  // owned by the loop thread's stack
  kj::TaskSet* tasks_ = nullptr;
};

}  // namespace

BlobService::BlobService(BlobStore& store) : store_(store), impl_(std::make_unique<Impl>()) {}
BlobService::~BlobService() = default;

capnp::Capability::Client BlobService::client() {
  return kj::heap<BlobStoreImpl>(store_, *impl_, reads_, bytes_);
}

Result<std::shared_ptr<ChunkSource>> connect_peer(const std::string& name, PeerConnector connect) {
  auto p = std::make_shared<RemotePeer>(name);
  if (auto r = p->connect(std::move(connect)); !r) return r.error();
  return std::shared_ptr<ChunkSource>(std::move(p));
}

}  // namespace omni::store
