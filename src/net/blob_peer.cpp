#include "net/blob_peer.h"

#include <capnp/rpc-twoparty.h>

#include <cstring>

#include "net/errors.h"
#include "net/node_connection.h"
#include "store/service.h"

namespace omni::net {
namespace {

// TLS stream, RPC system and the blob capability; destroyed on the loop thread that made them,
// capabilities first (reverse declaration order).
class BlobLink final : public store::PeerLink {
 public:
  explicit BlobLink(kj::Own<kj::AsyncIoStream> stream)
      : stream_(kj::mv(stream)),
        network_(*stream_, capnp::rpc::twoparty::Side::CLIENT, reader_options(kDefaultMaxMessageBytes)),
        rpc_(capnp::makeRpcClient(network_)) {}

  proto::Gate::Client gate() {
    capnp::word scratch[4];
    memset(scratch, 0, sizeof scratch);
    capnp::MallocMessageBuilder message(scratch);
    auto vat_id = message.getRoot<capnp::rpc::twoparty::VatId>();
    vat_id.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc_.bootstrap(vat_id).castAs<proto::Gate>();
  }
  void set_blobs(capnp::Capability::Client blobs) { blobs_ = kj::mv(blobs); }
  capnp::Capability::Client blobs() override { return blobs_; }
  kj::Promise<void> on_disconnect() override { return network_.onDisconnect(); }

 private:
  kj::Own<kj::AsyncIoStream> stream_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
  capnp::Capability::Client blobs_ = nullptr;
};

}  // namespace

Result<std::shared_ptr<store::ChunkSource>> connect_blob_peer(const PeerAddress& address,
                                                              std::shared_ptr<TlsContext> tls, uint32_t timeout_s,
                                                              std::string* seen_peer_id,
                                                              std::shared_ptr<Bandwidth> bandwidth) {
  auto seen = std::make_shared<std::string>();
  auto connector = [address, tls, timeout_s, seen, bandwidth](kj::AsyncIoContext& io) -> kj::Promise<kj::Own<store::PeerLink>> {
    const std::string where = address.host_port();
    // The node's own address, or its relay (CONNECT preamble) for "ID@relay:HOST:PORT": TLS runs
    // end to end either way, so the peer id is checked against the node itself.
    auto connecting =
        open_node_stream(*io.provider, address, bandwidth)
            .then([tls, address](kj::Own<kj::AsyncIoStream> stream) {
              return tls->connect(kj::mv(stream), address.peer_id);
            })
            .then([seen](TlsPeer peer) {
              *seen = peer.peer_id;
              auto link = kj::heap<BlobLink>(kj::mv(peer.stream));
              auto request = link->gate().openBlobsRequest();
              auto hello = request.initHello();
              hello.setProtocolVersion(proto::PROTOCOL_VERSION);
              hello.initRequiredFeatures(1).set(0, "blobs");
              return request.send().then([link = kj::mv(link)](auto response) mutable -> kj::Own<store::PeerLink> {
                link->set_blobs(response.getBlobs());
                return kj::mv(link);
              });
            });
    return with_timeout(io.provider->getTimer(), timeout_s * kj::SECONDS, "connecting to " + where,
                        kj::mv(connecting))
        .catch_([where](kj::Exception&& e) -> kj::Own<store::PeerLink> {
          rethrow_with_context(e, "cannot fetch blobs from " + where);
        });
  };
  auto source = store::connect_peer(address.to_string(), connector);
  if (source && seen_peer_id) *seen_peer_id = *seen;
  return source;
}

}  // namespace omni::net
