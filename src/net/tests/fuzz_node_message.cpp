// libFuzzer target: the node's message handling below its RPC handlers. Any byte stream read as a
// connection's incoming bytes through GuardedMessageStream must give messages or one refusal,
// never a crash, a hang or memory beyond the limits, and:
//   - a message that is delivered fits the limits (its size, its capability tables, the budget);
//   - every call to the node's methods that is delivered goes through the request validation the
//     node applies (validate_open, validate_forward, validate_ring_token, decode_hidden), which
//     must return a value or an Error, whatever the bytes;
//   - the budget is given back once the messages are dropped.
// The first byte picks the state of the connection (before or after hello) and the limits.
#include <capnp/rpc.capnp.h>
#include <kj/async.h>
#include <kj/timer.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "net/errors.h"
#include "net/guarded_message_stream.h"
#include "net/hidden_codec.h"
#include "net/receive_budget.h"
#include "net/request_validation.h"
#include "proto/node.capnp.h"

namespace {

using namespace omni::net;

constexpr uint64_t kTypeNode = capnp::typeId<omni::proto::Node>();
constexpr uint64_t kTypeSession = capnp::typeId<omni::proto::Session>();

// What the node's handlers do with a delivered call, minus the engine.
void handle(capnp::MessageReader& message, const MessageLimits& limits) {
  auto root = message.getRoot<capnp::rpc::Message>();
  if (!root.isCall()) return;
  auto call = root.getCall();
  auto params = call.getParams();
  if (params.getCapTable().size() > limits.max_caps) std::abort();  // the guard lets no such call through
  auto content = params.getContent();
  if (call.getInterfaceId() == kTypeNode && call.getMethodId() == 1) {
    NodeLimits node{0, 32, 32, 4096};
    auto open = validate_open(content.getAs<omni::proto::Node::OpenSessionParams>().getParams(), node);
    if (open && (open->block_begin >= open->block_end || open->downstream.size() > kMaxHops)) std::abort();
  } else if (call.getInterfaceId() == kTypeNode && call.getMethodId() == 2) {
    auto token = validate_ring_token(content.getAs<omni::proto::Node::AttachSinkParams>().getToken());
    if (token && (token->size() < kMinRingTokenBytes || token->size() > kMaxRingTokenBytes)) std::abort();
  } else if (call.getInterfaceId() == kTypeSession && call.getMethodId() == 0) {
    for (uint32_t block_begin : {0u, 1u}) {
      SessionLimits session{block_begin, 16, 100, 64};
      auto forward = validate_forward(content.getAs<omni::proto::Session::ForwardParams>().getInput(), session);
      if (!forward || forward->hidden.empty()) continue;
      std::vector<float> values;
      auto decoded = decode_hidden(forward->hidden, forward->n_tokens, 16, forward->encoding, values);
      if (decoded && values.size() != size_t{forward->n_tokens} * 16) std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kj::EventLoop loop;
  static kj::WaitScope wait(loop);
  static kj::TimerImpl timer(kj::origin<kj::TimePoint>());  // unused: no outgoing queue here
  if (size == 0) return 0;
  const bool greeted = data[0] & 1;
  const MessageLimits limits = greeted ? MessageLimits{uint64_t{1} << 20, 64} : MessageLimits{64 << 10, 4};
  auto budget = std::make_shared<ReceiveBudget>((data[0] & 2) ? (64 << 10) + 8 : (uint64_t{4} << 20));
  ++data;
  --size;

  auto pipe = kj::newTwoWayPipe();
  GuardedMessageStream guard(*pipe.ends[1], limits, budget, timer);
  auto written = pipe.ends[0]->write(data, size).then([&] { pipe.ends[0]->shutdownWrite(); }).eagerlyEvaluate(
      [](kj::Exception&&) {});
  std::vector<kj::Own<capnp::MessageReader>> held;  // as capnp holds calls in progress
  for (int i = 0; i < 64; ++i) {
    bool more = false;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      auto read = guard.tryReadMessage(nullptr, capnp::ReaderOptions()).wait(wait);
      KJ_IF_MAYBE(m, read) {
        if (m->reader->sizeInWords() * 8 > limits.max_bytes) std::abort();
        handle(*m->reader, limits);
        held.push_back(kj::mv(m->reader));
        more = true;
      }
    })) {
      (void)e;  // a refusal, or capnp's own error on a malformed message: the connection would end
    }
    if (!more) break;
  }
  if (budget->used() > budget->limit()) std::abort();
  held.clear();
  if (budget->used() != 0) std::abort();
  return 0;
}
