#include "net/node_connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstring>

namespace omni::net {

capnp::ReaderOptions reader_options(uint64_t max_message_bytes) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = max_message_bytes / 8;
  options.nestingLimit = 16;
  return options;
}

NodeConnection::NodeConnection(kj::Own<kj::AsyncIoStream> stream, std::string peer_id, PeerAddress address)
    : stream_(kj::mv(stream)), peer_id_(std::move(peer_id)), address_(std::move(address)) {
  network_ = kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                 reader_options(kDefaultMaxMessageBytes));
  rpc_ = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network_));
}

kj::Promise<kj::Own<NodeConnection>> NodeConnection::connect(kj::AsyncIoProvider& io, TlsContext& tls,
                                                             const PeerAddress& address,
                                                             std::vector<std::string> required_features,
                                                             kj::Duration timeout) {
  const std::string where = address.host_port();
  auto& timer = io.getTimer();
  auto connecting =
      io.getNetwork()
          .parseAddress(where.c_str())
          .then([](kj::Own<kj::NetworkAddress> addr) { return addr->connect().attach(kj::mv(addr)); })
          .then([&tls, address](kj::Own<kj::AsyncIoStream> tcp) {
            // TLS_NODELAY-like: one small message per token, so Nagle would only add latency.
            int one = 1;
            KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { tcp->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); })) {
              (void)e;  // not a TCP socket (tests): nothing to tune
            }
            return tls.connect(kj::mv(tcp), address.peer_id);
          })
          .then([address, required_features = kj::mv(required_features)](TlsPeer peer) mutable {
            auto connection = kj::heap<NodeConnection>(kj::mv(peer.stream), kj::mv(peer.peer_id), address);
            capnp::word scratch[4];
            memset(scratch, 0, sizeof scratch);
            capnp::MallocMessageBuilder message(scratch);
            auto vat_id = message.getRoot<capnp::rpc::twoparty::VatId>();
            vat_id.setSide(capnp::rpc::twoparty::Side::SERVER);
            auto gate = connection->rpc_->bootstrap(vat_id).castAs<proto::Gate>();
            auto request = gate.helloRequest();
            auto hello = request.initHello();
            hello.setProtocolVersion(proto::PROTOCOL_VERSION);
            auto features = hello.initRequiredFeatures(static_cast<unsigned>(required_features.size()));
            for (unsigned i = 0; i < required_features.size(); ++i) features.set(i, required_features[i].c_str());
            return request.send().then([connection = kj::mv(connection)](auto response) mutable {
              connection->node_ = response.getNode();
              connection->info_ = read_node_info(response.getInfo());
              if (connection->info_.peer_id != connection->peer_id_)
                throw_rpc_error("the node at " + connection->address_.host_port() + " says its id is " +
                                connection->info_.peer_id + " but proved " + connection->peer_id_);
              return kj::mv(connection);
            });
          });
  return with_timeout(timer, timeout, "connecting to " + where, kj::mv(connecting))
      .catch_([where](kj::Exception&& e) -> kj::Own<NodeConnection> {
        throw_rpc_error(e.getType(), "node " + where + ": " + describe(e));
      });
}

}  // namespace omni::net
