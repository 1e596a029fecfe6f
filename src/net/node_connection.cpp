#include "net/node_connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstring>

#include "net/relay_preamble.h"
#include "net/throttled_stream.h"

namespace omni::net {

capnp::ReaderOptions reader_options(uint64_t max_message_bytes) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = max_message_bytes / 8;
  options.nestingLimit = 16;
  return options;
}

kj::Promise<kj::Own<kj::AsyncIoStream>> connect_tcp(kj::AsyncIoProvider& io, const std::string& host_port) {
  return io.getNetwork()
      .parseAddress(host_port.c_str())
      .then([](kj::Own<kj::NetworkAddress> addr) { return addr->connect().attach(kj::mv(addr)); })
      .then([](kj::Own<kj::AsyncIoStream> tcp) {
        int one = 1;
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { tcp->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); })) {
          (void)e;  // not a TCP socket (tests): nothing to tune
        }
        return tcp;
      });
}

kj::Promise<kj::Own<kj::AsyncIoStream>> open_node_stream(kj::AsyncIoProvider& io, const PeerAddress& address,
                                                        std::shared_ptr<Bandwidth> bandwidth) {
  auto tcp = connect_tcp(io, address.dial_host_port());
  if (bandwidth)
    tcp = tcp.then([&timer = io.getTimer(), bandwidth](kj::Own<kj::AsyncIoStream> stream) {
      return throttle(kj::mv(stream), bandwidth, timer);
    });
  if (!address.relayed) return tcp;
  const std::string line = format_relay_request({RelayRequest::Kind::Connect, address.peer_id, {}});
  return tcp.then([line](kj::Own<kj::AsyncIoStream> stream) {
    auto text = kj::heapString(line.c_str());
    auto& s = *stream;
    return s.write(text.begin(), text.size())
        .attach(kj::mv(text))
        .then([&s] { return read_relay_line(s); })
        .then([stream = kj::mv(stream)](std::string reply) mutable {
          if (auto ok = parse_relay_reply(reply); !ok) throw_rpc_error(ok.error());
          return kj::mv(stream);
        });
  });
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
                                                             kj::Duration timeout,
                                                             std::shared_ptr<Bandwidth> bandwidth) {
  const std::string where = address.host_port();
  auto& timer = io.getTimer();
  auto connecting =
      open_node_stream(io, address, std::move(bandwidth))
          .then([&tls, address](kj::Own<kj::AsyncIoStream> stream) { return tls.connect(kj::mv(stream), address.peer_id); })
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
                throw_rpc_error(ErrorCode::PermissionDenied, "the node at " + connection->address_.host_port() +
                                                                 " says its id is " + connection->info_.peer_id +
                                                                 " but proved " + connection->peer_id_);
              return kj::mv(connection);
            });
          });
  return with_timeout(timer, timeout, "connecting to " + where, kj::mv(connecting))
      .catch_([where](kj::Exception&& e) -> kj::Own<NodeConnection> {
        rethrow_with_context(e, "node " + where);
      });
}

}  // namespace omni::net
