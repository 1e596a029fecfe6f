// Seeds for fuzz_node_message: the byte streams a legitimate client sends a node (Bootstrap,
// Gate.hello, Node.openSession with downstream hops and a ring token, Node.attachSink,
// Session.forward with tokens and with F16 / Q8 hidden states), each as a file whose first byte
// selects "after hello" (see the fuzzer). Usage: node_message_seeds OUT_DIR [ignored...]
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "proto/node.capnp.h"

namespace {

using namespace omni;

std::vector<char> bytes_of(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto chars = words.asChars();
  return std::vector<char>(chars.begin(), chars.end());
}

// A Call message on the answer to question 0 (the bootstrap capability, or what it resolved to).
template <class Params>
std::vector<char> call(uint64_t interface_id, uint16_t method, uint32_t question,
                       const std::function<void(typename Params::Builder)>& fill) {
  capnp::MallocMessageBuilder message;
  auto c = message.initRoot<capnp::rpc::Message>().initCall();
  c.setQuestionId(question);
  c.setInterfaceId(interface_id);
  c.setMethodId(method);
  c.initTarget().initPromisedAnswer().setQuestionId(0);
  fill(c.initParams().getContent().initAs<Params>());
  return bytes_of(message);
}

std::vector<char> bootstrap() {
  capnp::MallocMessageBuilder message;
  message.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(0);
  return bytes_of(message);
}

void write(const std::string& path, char first, const std::vector<std::vector<char>>& messages) {
  std::ofstream out(path, std::ios::binary);
  out.put(first);
  for (const auto& m : messages) out.write(m.data(), static_cast<std::streamsize>(m.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: node_message_seeds OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const uint64_t gate = capnp::typeId<proto::Gate>(), node = capnp::typeId<proto::Node>(),
                 session = capnp::typeId<proto::Session>();
  auto hello = call<proto::Gate::HelloParams>(gate, 0, 1, [](auto p) {
    auto h = p.initHello();
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    auto f = h.initRequiredFeatures(2);
    f.set(0, "chain");
    f.set(1, "hidden-f16");
  });
  write(dir + "/hello", 0, {bootstrap(), hello});
  auto open = call<proto::Node::OpenSessionParams>(node, 1, 2, [](auto p) {
    auto o = p.initParams();
    o.setBlockBegin(0);
    o.setBlockEnd(2);
    o.setMaxLength(64);
    o.setHiddenFormat(proto::HiddenFormat::F16);
    auto hops = o.initDownstream(2);
    const char* id = "ciqddfvctznqob7s7opt4dsyneb63elrmrlqsicwuqf3zsb4ue5em6a";
    hops[0].setAddress("127.0.0.1:7001");
    hops[0].setPeerId(id);
    hops[0].setBlockBegin(2);
    hops[0].setBlockEnd(3);
    hops[1].setAddress("[::1]:7002");
    hops[1].setPeerId(id);
    hops[1].setBlockBegin(3);
    hops[1].setBlockEnd(4);
    std::vector<kj::byte> token(32, 0x5a);
    o.setRingToken(kj::arrayPtr(token.data(), token.size()));
  });
  write(dir + "/open_session", 1, {open});
  auto sink = call<proto::Node::AttachSinkParams>(node, 2, 3, [](auto p) {
    std::vector<kj::byte> token(16, 0x11);
    p.setToken(kj::arrayPtr(token.data(), token.size()));
  });
  write(dir + "/attach_sink", 1, {sink});
  auto tokens = call<proto::Session::ForwardParams>(session, 0, 4, [](auto p) {
    auto in = p.initInput();
    auto t = in.getInput().initTokens(3);
    t.set(0, 1);
    t.set(1, 42);
    t.set(2, 99);
    in.setOutputLast(1);
  });
  auto hidden = [&](proto::HiddenFormat format, size_t bytes) {
    return call<proto::Session::ForwardParams>(session, 0, 5, [format, bytes](auto p) {
      auto in = p.initInput();
      auto h = in.getInput().initHidden();
      h.setFormat(format);
      h.setNTokens(2);
      h.setNEmbd(16);
      std::vector<kj::byte> data(bytes, 0x3c);
      h.setData(kj::arrayPtr(data.data(), data.size()));
      in.setStartPosition(0);
      auto micros = in.initUpstreamComputeMicros(1);
      micros.set(0, 1234);
    });
  };
  write(dir + "/forward", 1,
        {tokens, hidden(proto::HiddenFormat::F16, 2 * 16 * 2), hidden(proto::HiddenFormat::Q8, 2 * 20)});
  return 0;
}
