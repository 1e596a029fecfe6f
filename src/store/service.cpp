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

// A failed connection to a peer, or a failed read on it. Whatever the peer's reason (src/store sits
// below src/net, which decodes codes carried over RPC), for the fetch engine it means the same: this
// peer cannot supply the bytes now, and the others may.
Error peer_error(const std::string& peer, const kj::Exception& e) {
  return Error{ErrorCode::Unavailable, peer + ": " + describe(e)};
}

Cid parse_cid(capnp::Data::Reader bytes) {
  auto c = Cid::from_binary({bytes.begin(), bytes.size()});
  KJ_REQUIRE(c.ok(), "malformed CID");
  return *c;
}

}  // namespace

struct BlobService::Impl {
  std::function<void(const std::string&)> log;
  std::mutex mu;
  std::map<Cid, std::unique_ptr<MappedFile>> mapped;  // see the header: kept until the service ends

  // The blob's mapping, its bytes verified against its CID first (BlobStore::verify: a stat and a
  // record read per call, a hash only when the file changed). A blob that fails is never served:
  // the failure is the error, and a kept mapping of it is not used.
  Result<const MappedFile*> mapping(BlobStore& store, const Cid& cid) {
    if (auto v = store.verify(cid); !v) {
      if (!v.error().is(ErrorCode::NotFound) && log) log("not serving " + v.error().message);
      return v.error();
    }
    std::lock_guard lock(mu);
    auto it = mapped.find(cid);
    if (it != mapped.end()) return it->second.get();
    auto m = store.map(cid);
    if (!m) return m.error();
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
    const Cid cid = parse_cid(context.getParams().getCid());
    // A blob that fails verification is not had: it is removed, and never served.
    auto size = store_.verify(cid).ok() ? store_.size(cid) : Result<uint64_t>(Error{ErrorCode::NotFound, ""});
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
    auto mapped = impl_.mapping(store_, cid);
    if (!mapped) {
      // The details (paths, what the bytes hash to) stay in this node's log.
      KJ_REQUIRE(!mapped.error().is(ErrorCode::NotFound), "blob not held by this peer", cid.to_string());
      KJ_REQUIRE(!mapped.error().is(ErrorCode::Corruption), "blob failed verification at this peer", cid.to_string());
      KJ_FAIL_REQUIRE("blob unreadable at this peer", cid.to_string());
    }
    const MappedFile* blob = *mapped;
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
    if (done) done(Error{ErrorCode::Unavailable, peer + ": connection closed"});
  }
  void fire(Result<ChunkBuffer> r) {
    auto d = std::move(done);
    done = nullptr;
    d(std::move(r));
  }
};

// Reads that other threads hand to a peer's loop thread, with the wake-up that makes it send them.
struct Mailbox {
  struct Read {
    Cid cid;
    uint64_t offset;
    uint32_t length;
    std::shared_ptr<Pending> pending;
  };
  std::mutex mu;
  std::vector<Read> reads;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;  // fulfilled to wake the loop
  bool wake_pending = false;
  bool closed = false;

  void wake_locked() {
    if (!wake_pending && wake) {
      wake_pending = true;
      wake->fulfill();
    }
  }
};

// Reads are handed to the loop thread through the mailbox and a cross-thread wake-up, so the fetch
// thread never waits for the loop (which may be busy decrypting a chunk) to take one.
class RemotePeer final : public ChunkSource {
 public:
  explicit RemotePeer(std::string name) : name_(std::move(name)), mailbox_(std::make_shared<Mailbox>()) {}
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
    std::lock_guard lock(mailbox_->mu);
    if (mailbox_->closed) return;  // `pending` fires "connection closed" as it goes
    mailbox_->reads.push_back({cid, offset, length, std::move(pending)});
    mailbox_->wake_locked();
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
          auto serving = serve_mailbox().eagerlyEvaluate(nullptr);
          started.set_value("");
          reported = true;
          // Runs until the peer is destroyed; a dropped connection fails the reads in flight.
          paf.promise.wait(io.waitScope);
          close_mailbox();
          tasks_ = nullptr;
        }
        client_ = nullptr;
      } catch (const kj::Exception& e) {
        close_mailbox();
        if (!reported) started.set_value(name_ + ": " + describe(e));
      }
    });
    std::string error = ready.get();
    if (!error.empty()) {
      thread_.join();
      return Error{ErrorCode::Unavailable, error};
    }
    return {};
  }

 private:
  // On the loop thread: arms the next wake-up, then sends the queued reads; repeats when woken.
  kj::Promise<void> serve_mailbox() {
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    std::vector<Mailbox::Read> reads;
    {
      std::lock_guard lock(mailbox_->mu);
      mailbox_->wake = kj::mv(paf.fulfiller);
      mailbox_->wake_pending = false;
      reads.swap(mailbox_->reads);
    }
    for (auto& r : reads) send(r);
    return paf.promise.then([this] { return serve_mailbox(); });
  }

  // On the loop thread, as it ends: reads not sent yet fail.
  void close_mailbox() {
    std::vector<Mailbox::Read> reads;
    {
      std::lock_guard lock(mailbox_->mu);
      mailbox_->closed = true;
      mailbox_->wake = nullptr;
      reads.swap(mailbox_->reads);
    }
    reads.clear();  // each fires "connection closed"
  }

  kj::Promise<capnp::Response<proto::BlobStore::ReadResults>> read_request(const Cid& cid, uint64_t offset,
                                                                          uint32_t length) {
    auto req = client_->readRequest(capnp::MessageSize{16, 0});
    auto bin = cid.to_binary();
    req.setCid(kj::arrayPtr(bin.data(), bin.size()));
    req.setOffset(offset);
    req.setLength(length);
    return req.send();
  }

  // A chunk larger than a peer serves in one read (maxReadBytes; a manifest allows chunks up to
  // 64 MiB) is read in pieces of at most that, and put together before it goes to the fetch.
  void send_in_pieces(Mailbox::Read& r) {
    auto pieces = kj::heapArrayBuilder<kj::Promise<kj::Array<kj::byte>>>(
        (r.length + proto::MAX_READ_BYTES - 1) / proto::MAX_READ_BYTES);
    for (uint64_t done = 0; done < r.length; done += proto::MAX_READ_BYTES) {
      const auto length = static_cast<uint32_t>(std::min<uint64_t>(proto::MAX_READ_BYTES, r.length - done));
      pieces.add(read_request(r.cid, r.offset + done, length)
                     .then([](capnp::Response<proto::BlobStore::ReadResults>&& response) {
                       auto data = response.getData();
                       return kj::heapArray<kj::byte>(data.begin(), data.size());
                     }));
    }
    tasks_->add(kj::joinPromises(pieces.finish())
                    .then(
                        [pending = r.pending](kj::Array<kj::Array<kj::byte>>&& parts) {
                          std::vector<uint8_t> whole;
                          for (const auto& p : parts) whole.insert(whole.end(), p.begin(), p.end());
                          pending->fire(ChunkBuffer::copy_of(whole));
                        },
                        [pending = r.pending, this](kj::Exception&& e) { pending->fire(peer_error(name_, e)); }));
  }

  void send(Mailbox::Read& r) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      if (r.length > proto::MAX_READ_BYTES) return send_in_pieces(r);
      tasks_->add(read_request(r.cid, r.offset, r.length).then(
          [pending = r.pending](capnp::Response<proto::BlobStore::ReadResults>&& response) {
            // The one copy on this side, out of the message into a recycled page-aligned buffer
            // that the store writes directly. (Lending the message itself to the fetch's workers
            // saves the copy but costs more: capnp's message buffers, held longer and freed
            // elsewhere, stop being reused warm and every chunk pays page faults instead.)
            auto data = response.getData();
            pending->fire(ChunkBuffer::copy_of({data.begin(), data.size()}));
          },
          [pending = r.pending, this](kj::Exception&& e) { pending->fire(peer_error(name_, e)); }));
    })) {
      r.pending->fire(peer_error(name_, *e));
    }
  }

  std::string name_;
  std::shared_ptr<Mailbox> mailbox_;
  std::thread thread_;
  kj::Own<const kj::Executor> executor_;
  kj::Own<kj::PromiseFulfiller<void>> stop_;
  proto::BlobStore::Client* client_ = nullptr;  // owned by the loop thread's stack
  kj::TaskSet* tasks_ = nullptr;
};

}  // namespace

BlobService::BlobService(BlobStore& store, std::function<void(const std::string&)> log)
    : store_(store), impl_(std::make_unique<Impl>()) {
  impl_->log = std::move(log);
}
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
