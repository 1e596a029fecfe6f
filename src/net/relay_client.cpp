#include "net/relay_client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/debug.h>
#include <random>

#include "net/errors.h"
#include "net/node_connection.h"
#include "net/relay_preamble.h"
#include "net/relay_splice.h"
#include "proto/relay.capnp.h"

namespace omni::net {

namespace {
constexpr double kFirstBackoffS = 0.5;
constexpr double kMaxBackoffS = 10.0;
}  // namespace

struct RelayClient::State final : public kj::TaskSet::ErrorHandler {
  State(kj::AsyncIoProvider& provider, std::shared_ptr<TlsContext> context, RelayClientOptions o)
      : io(provider), tls(std::move(context)), options(std::move(o)), splices(*this), rng(std::random_device{}()) {}

  kj::AsyncIoProvider& io;
  std::shared_ptr<TlsContext> tls;
  RelayClientOptions options;
  uint32_t active = 0;
  uint64_t registrations = 0;
  uint32_t idle_timeout_s = 300;  // the relay's, from its terms
  kj::TaskSet splices;
  std::mt19937_64 rng;

  void log(const std::string& line) const {
    if (options.log) options.log(line);
  }
  void taskFailed(kj::Exception&& e) override { log("relayed connection ended: " + to_error(e).message); }
};

namespace {

using State = RelayClient::State;

// Writes `text` to `stream` (the text lives until the write is done).
kj::Promise<void> write_text(kj::AsyncIoStream& stream, const std::string& text) {
  auto bytes = kj::heapString(text.c_str());
  auto written = stream.write(bytes.begin(), bytes.size());
  return written.attach(kj::mv(bytes));
}

// A relayed connection's place in max_connections. Holds the state weakly: the slot lives in the
// state's own task set, which the state destroys.
class ActiveSlot {
 public:
  explicit ActiveSlot(const std::shared_ptr<State>& state) : state_(state) { state->active++; }
  ~ActiveSlot() {
    if (auto s = state_.lock()) s->active--;
  }
  ActiveSlot(const ActiveSlot&) = delete;
  ActiveSlot& operator=(const ActiveSlot&) = delete;

 private:
  std::weak_ptr<State> state_;
};

class DialerImpl final : public proto::RelayDialer::Server {
 public:
  explicit DialerImpl(std::shared_ptr<State> state) : state_(std::move(state)) {}

  kj::Promise<void> dial(DialContext context) override {
    auto data = context.getParams().getToken();
    RelayToken token{};
    if (data.size() != token.size())
      throw_rpc_error(ErrorCode::InvalidArgument, "a relay token has " + std::to_string(token.size()) + " bytes, not " +
                                                      std::to_string(data.size()));
    std::copy(data.begin(), data.end(), token.begin());
    auto& s = *state_;
    if (s.active >= s.options.max_connections)
      throw_rpc_error(
          ErrorCode::ResourceExhausted,
          "the node serves its maximum of " + std::to_string(s.options.max_connections) + " relayed connections");
    auto slot = kj::heap<ActiveSlot>(state_);
    auto state = state_;
    const std::string line = format_relay_request({RelayRequest::Kind::Accept, {}, token});
    auto local = connect_tcp(s.io, s.options.local);
    auto opened = local.then([state, line](kj::Own<kj::AsyncIoStream> to_node) {
      return connect_tcp(state->io, state->options.relay.dial_host_port())
          .then([line, to_node = kj::mv(to_node)](kj::Own<kj::AsyncIoStream> to_relay) mutable {
            auto& stream = *to_relay;
            return write_text(stream, line).then([to_node = kj::mv(to_node), to_relay = kj::mv(to_relay)]() mutable {
              return std::make_pair(kj::mv(to_relay), kj::mv(to_node));
            });
          });
    });
    return with_timeout(s.io.getTimer(), s.options.connect_timeout_s * kj::SECONDS, "dialing back to the relay",
                        kj::mv(opened))
        .then([state, slot = kj::mv(slot)](
                  std::pair<kj::Own<kj::AsyncIoStream>, kj::Own<kj::AsyncIoStream>> streams) mutable {
          // Twice the relay's idle limit: the relay closes idle connections, this is a backstop.
          auto done = splice(kj::mv(streams.first), kj::mv(streams.second), state->io.getTimer(),
                             SpliceOptions{.idle_timeout = 2 * state->idle_timeout_s * kj::SECONDS});
          state->splices.add(done.ignoreResult().attach(kj::mv(slot)));
        });
  }

 private:
  std::shared_ptr<State> state_;
};

// One control connection, alive while registered.
struct Control {
  explicit Control(kj::Own<kj::AsyncIoStream> s)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::CLIENT, reader_options(1 << 20)),
        rpc(capnp::makeRpcClient(network)) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
  // Declared after the RPC system: capabilities go first.
  proto::RelayRegistration::Client registration = nullptr;
  uint32_t keepalive_s = 15;
};

kj::Promise<void> keepalive(std::shared_ptr<State> state, Control& control) {
  const auto period = control.keepalive_s * kj::SECONDS;
  return state->io.getTimer().afterDelay(period).then([state, &control, period] {
    return with_timeout(state->io.getTimer(), period, "a keepalive ping to the relay",
                        control.registration.pingRequest().send())
        .then([state, &control](auto) { return keepalive(state, control); });
  });
}

// One registration, from connecting to its end; always ends in an exception saying why.
kj::Promise<void> registration(std::shared_ptr<State> state) {
  const PeerAddress& relay = state->options.relay;
  auto connecting =
      connect_tcp(state->io, relay.dial_host_port())
          .then([state](kj::Own<kj::AsyncIoStream> tcp) {
            auto& stream = *tcp;
            return write_text(stream, format_relay_request({RelayRequest::Kind::Register, {}, {}}))
                .then([state, tcp = kj::mv(tcp)]() mutable {
                  return state->tls->connect(kj::mv(tcp), state->options.relay.peer_id);
                });
          })
          .then([state](TlsPeer peer) {
            auto control = kj::heap<Control>(kj::mv(peer.stream));
            capnp::MallocMessageBuilder message(8);
            auto vat = message.initRoot<capnp::rpc::twoparty::VatId>();
            vat.setSide(capnp::rpc::twoparty::Side::SERVER);
            auto gate = control->rpc.bootstrap(vat).castAs<proto::RelayGate>();
            auto request = gate.registerNodeRequest();
            request.setProtocolVersion(proto::RELAY_PROTOCOL_VERSION);
            request.setDialer(kj::heap<DialerImpl>(state));
            return request.send().then([control = kj::mv(control)](auto response) mutable {
              control->registration = response.getRegistration();
              auto terms = response.getTerms();
              control->keepalive_s = std::clamp<uint32_t>(terms.getKeepaliveSeconds(), 1, 300);
              return std::make_pair(kj::mv(control), std::make_pair(std::string(terms.getPublicAddress().cStr()),
                                                                    terms.getIdleTimeoutSeconds()));
            });
          });
  return with_timeout(state->io.getTimer(), state->options.connect_timeout_s * kj::SECONDS, "registering",
                      kj::mv(connecting))
      .then([state](auto registered) {
        kj::Own<Control> control = kj::mv(registered.first);
        std::string public_address = registered.second.first;
        if (public_address.empty() || !parse_listen_address(public_address).ok())
          public_address = state->options.relay.dial_host_port();
        state->idle_timeout_s = std::max<uint32_t>(registered.second.second, 1);
        state->registrations++;
        if (state->options.on_registered)
          state->options.on_registered(state->tls->identity().peer_id() + "@relay:" + public_address);
        Control& c = *control;
        auto closed = c.network.onDisconnect().then([]() -> kj::Promise<void> {
          throw_rpc_error(ErrorCode::Unavailable, "the relay closed the control connection");
        });
        return closed.exclusiveJoin(keepalive(state, c)).attach(kj::mv(control));
      });
}

kj::Promise<void> stay_registered(std::shared_ptr<State> state, double backoff_s) {
  const uint64_t before = state->registrations;
  return registration(state).then(
      []() -> kj::Promise<void> { return kj::NEVER_DONE; },  // registration() only ends by failing
      [state, backoff_s, before](kj::Exception&& e) -> kj::Promise<void> {
        // After a working registration start over from the shortest wait.
        const double base = state->registrations > before ? kFirstBackoffS : backoff_s;
        std::uniform_real_distribution<double> jitter(0.8, 1.2);
        const double wait_s = base * jitter(state->rng);
        char line[64];
        std::snprintf(line, sizeof line, "; reconnecting in %.1f s", wait_s);
        state->log("relay " + state->options.relay.dial_host_port() + ": " + to_error(e).message + line);
        const auto wait = static_cast<int64_t>(wait_s * 1000) * kj::MILLISECONDS;
        return state->io.getTimer().afterDelay(wait).then([state, base] {
          return stay_registered(state, std::min(base * 2, kMaxBackoffS));
        });
      });
}

}  // namespace

RelayClient::RelayClient(kj::AsyncIoProvider& io, std::shared_ptr<TlsContext> tls, RelayClientOptions options)
    : state_(std::make_shared<State>(io, std::move(tls), std::move(options))) {}

RelayClient::~RelayClient() = default;

kj::Promise<void> RelayClient::run() { return stay_registered(state_, kFirstBackoffS); }

uint32_t RelayClient::active() const { return state_->active; }
uint64_t RelayClient::registrations() const { return state_->registrations; }

}  // namespace omni::net
