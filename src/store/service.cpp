#include "store/service.h"

#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "store.capnp.h"

namespace omni::store {
namespace {

std::string describe(const kj::Exception& e) { return e.getDescription().cStr(); }

class BlobStoreImpl final : public proto::BlobStore::Server {
 public:
  BlobStoreImpl(store::BlobStore& store, std::atomic<uint64_t>& served) : store_(store), served_(served) {}

  kj::Promise<void> stat(StatContext context) override {
    auto cid = parse(context.getParams().getCid());
    auto size = store_.size(cid);
    auto results = context.getResults();
    results.setHas(size.ok());
    results.setSize(size ? *size : 0);
    return kj::READY_NOW;
  }

  kj::Promise<void> read(ReadContext context) override {
    auto params = context.getParams();
    Cid cid = parse(params.getCid());
    const uint64_t offset = params.getOffset();
    const uint32_t length = params.getLength();
    KJ_REQUIRE(length <= proto::MAX_READ_BYTES, "read longer than maxReadBytes", length);
    std::string path = store_.blob_path(cid);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    KJ_REQUIRE(fd >= 0, "blob not held by this peer", cid.to_string());
    KJ_DEFER(::close(fd));
    off_t size = ::lseek(fd, 0, SEEK_END);
    KJ_REQUIRE(size >= 0 && offset <= static_cast<uint64_t>(size), "range past the end of the blob");
    const size_t n = static_cast<size_t>(std::min<uint64_t>(length, static_cast<uint64_t>(size) - offset));
    auto data = context.getResults().initData(static_cast<unsigned>(n));
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd, data.begin() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      KJ_REQUIRE(r > 0, "read failed on the serving peer");
      done += static_cast<size_t>(r);
    }
    ++served_;
    return kj::READY_NOW;
  }

 private:
  static Cid parse(capnp::Data::Reader bytes) {
    auto c = Cid::from_binary({bytes.begin(), bytes.size()});
    KJ_REQUIRE(c.ok(), "malformed CID");
    return *c;
  }
  store::BlobStore& store_;
  std::atomic<uint64_t>& served_;
};

class Server final : public BlobServer {
 public:
  ~Server() noexcept override {
    if (executor_) {
      try {
        executor_->executeSync([this] { stop_->fulfill(); });
      } catch (const kj::Exception&) {
        // The loop already ended (its listener failed): nothing to stop.
      }
    }
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const override { return port_; }
  uint64_t reads_served() const override { return served_; }

  Result<void> run(store::BlobStore& store, const std::string& address) {
    std::promise<std::string> started;  // "" on success, else the error
    auto ready = started.get_future();
    thread_ = std::thread([this, &store, address, &started] {
      try {
        auto io = kj::setupAsyncIo();
        auto paf = kj::newPromiseAndFulfiller<void>();
        stop_ = kj::mv(paf.fulfiller);
        auto listener = io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->listen();
        port_ = static_cast<uint16_t>(listener->getPort());
        capnp::TwoPartyServer server(kj::heap<BlobStoreImpl>(store, served_));
        auto listening = server.listen(*listener);
        executor_ = kj::getCurrentThreadExecutor().addRef();
        started.set_value("");
        paf.promise.exclusiveJoin(kj::mv(listening)).wait(io.waitScope);
      } catch (const kj::Exception& e) {
        if (!executor_) started.set_value(address + ": cannot listen: " + describe(e));
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
  std::thread thread_;
  kj::Own<const kj::Executor> executor_;
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  uint16_t port_ = 0;
  std::atomic<uint64_t> served_{0};
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

class RemotePeer final : public ChunkSource, public std::enable_shared_from_this<RemotePeer> {
 public:
  explicit RemotePeer(std::string address) : address_(std::move(address)) {}
  ~RemotePeer() noexcept override {
    if (executor_) {
      try {
        executor_->executeSync([this] { stop_->fulfill(); });
      } catch (const kj::Exception&) {
        // The loop already ended (connection failure): nothing to stop.
      }
    }
    if (thread_.joinable()) thread_.join();
  }

  std::string name() const override { return address_; }

  void read(const Cid& cid, uint64_t offset, uint32_t length, Done done) override {
    auto pending = std::make_shared<Pending>();  // built in place: a copy would fire on destruction
    pending->done = std::move(done);
    pending->peer = address_;
    try {
      executor_->executeSync([&] {
        auto req = client_->readRequest();
        auto bin = cid.to_binary();
        req.setCid(kj::arrayPtr(bin.data(), bin.size()));
        req.setOffset(offset);
        req.setLength(length);
        tasks_->add(req.send().then(
            [pending](capnp::Response<proto::BlobStore::ReadResults>&& r) {
              auto d = r.getData();
              pending->fire(std::vector<uint8_t>(d.begin(), d.end()));
            },
            [pending, this](kj::Exception&& e) { pending->fire(Error{address_ + ": " + describe(e)}); }));
      });
    } catch (const kj::Exception& e) {
      pending->fire(Error{address_ + ": " + describe(e)});
    }
  }

  Result<void> connect() {
    std::promise<std::string> started;
    auto ready = started.get_future();
    thread_ = std::thread([this, &started] {
      bool reported = false;
      try {
        auto io = kj::setupAsyncIo();
        auto addr = io.provider->getNetwork().parseAddress(address_).wait(io.waitScope);
        auto stream = addr->connect().wait(io.waitScope);
        capnp::TwoPartyClient rpc(*stream);
        auto client = rpc.bootstrap().castAs<proto::BlobStore>();
        client_ = &client;
        struct Errors final : kj::TaskSet::ErrorHandler {
          void taskFailed(kj::Exception&&) override {}  // each task reports through its Pending
        } errors;
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
        client_ = nullptr;
      } catch (const kj::Exception& e) {
        if (!reported) started.set_value(address_ + ": cannot connect: " + describe(e));
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
  std::string address_;
  std::thread thread_;
  kj::Own<const kj::Executor> executor_;
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  proto::BlobStore::Client* client_ = nullptr;  // owned by the loop thread's stack
  kj::TaskSet* tasks_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<BlobServer>> BlobServer::start(BlobStore& store, const std::string& address) {
  auto s = std::make_unique<Server>();
  if (auto r = s->run(store, address); !r) return r.error();
  return std::unique_ptr<BlobServer>(std::move(s));
}

Result<std::shared_ptr<ChunkSource>> connect_peer(const std::string& address) {
  auto p = std::make_shared<RemotePeer>(address);
  if (auto r = p->connect(); !r) return r.error();
  return std::shared_ptr<ChunkSource>(std::move(p));
}

}  // namespace omni::store
