// The node's defences below the RPC system: GuardedMessageStream (segment-table checks before any
// allocation, capability tables, the receive budget), ReceiveBudget and ConnectionLimits.
#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/timer.h>

#include <cstring>
#include <optional>
#include <utility>

#include "net/connection_limits.h"
#include "net/errors.h"
#include "net/guarded_message_stream.h"
#include "net/receive_budget.h"

namespace omni::net {
namespace {

// A Call message whose capability table has `caps` entries and whose params carry `data_bytes`
// bytes (as a Data blob), like a forward request.
void build_call(capnp::MallocMessageBuilder& message, unsigned caps, size_t data_bytes = 0) {
  auto call = message.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(1);
  call.initTarget().setImportedCap(0);
  auto params = call.initParams();
  if (data_bytes) params.getContent().setAs<capnp::Data>(kj::heapArray<kj::byte>(data_bytes));
  auto table = params.initCapTable(caps);
  for (unsigned i = 0; i < caps; ++i) table[i].setSenderHosted(i);
}

std::vector<uint8_t> table_bytes(std::initializer_list<uint32_t> words) {
  std::vector<uint8_t> t(segment_table_bytes(static_cast<uint32_t>(words.size())), 0);
  const uint32_t count_minus_one = static_cast<uint32_t>(words.size()) - 1;
  std::memcpy(t.data(), &count_minus_one, 4);
  size_t at = 4;
  for (uint32_t w : words) {
    std::memcpy(t.data() + at, &w, 4);
    at += 4;
  }
  return t;
}

TEST(SegmentTable, CountsAndSizesAreCheckedBeforeAnyAllocation) {
  auto one = table_bytes({10});
  auto t = parse_segment_table(one, 1000);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->message_bytes, 8u + 80u);

  auto three = table_bytes({1, 2, 3});  // 4 + 12 bytes, padded to 16
  ASSERT_EQ(three.size(), 16u);
  t = parse_segment_table(three, 1000);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->message_bytes, 16u + 48u);

  // Declared size over the limit: ResourceExhausted naming both sizes.
  auto big = table_bytes({1u << 20});
  t = parse_segment_table(big, 65536);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, ErrorCode::ResourceExhausted);
  EXPECT_NE(t.error().message.find(std::to_string(8 + (8u << 20))), std::string::npos) << t.error().message;
  EXPECT_NE(t.error().message.find("65536"), std::string::npos);

  // 2^32 segments (the count field wraps in 32 bits) or 513: Corruption.
  uint8_t first[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
  auto count = segment_count(first);
  ASSERT_FALSE(count);
  EXPECT_EQ(count.error().code, ErrorCode::Corruption);
  const uint32_t too_many = kMaxSegments;  // count - 1
  std::memcpy(first, &too_many, 4);
  EXPECT_FALSE(segment_count(first));
  const uint32_t most = kMaxSegments - 1;
  std::memcpy(first, &most, 4);
  EXPECT_TRUE(segment_count(first));

  // A table whose length does not match its count.
  EXPECT_FALSE(parse_segment_table(std::span<const uint8_t>(three.data(), 8), 1000));
}

struct Loop {
  kj::EventLoop loop;
  kj::WaitScope wait{loop};
  kj::TimerImpl timer{kj::origin<kj::TimePoint>()};  // advanced by hand
};

// Writes `message` into one end of a pipe and reads it back through a GuardedMessageStream;
// returns the reader or the Error the stream refused it with.
Result<kj::Own<capnp::MessageReader>> through_guard(Loop& l, capnp::MallocMessageBuilder& message,
                                                    const MessageLimits& limits,
                                                    std::shared_ptr<ReceiveBudget> budget) {
  auto pipe = kj::newTwoWayPipe();
  GuardedMessageStream guard(*pipe.ends[1], limits, std::move(budget), l.timer);
  auto written = capnp::writeMessage(*pipe.ends[0], message)
                     .then([&] { pipe.ends[0]->shutdownWrite(); })
                     .eagerlyEvaluate([](kj::Exception&&) {});
  Result<kj::Own<capnp::MessageReader>> result = Error{ErrorCode::Internal, "no message"};
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    auto read = guard.tryReadMessage(nullptr, capnp::ReaderOptions()).wait(l.wait);
    KJ_IF_MAYBE(m, read) { result = kj::mv(m->reader); }
  })) {
    result = to_error(*e);
  }
  return result;
}

TEST(GuardedMessageStream, CapabilityTablesAreLimited) {
  Loop l;
  auto budget = std::make_shared<ReceiveBudget>(64 << 20);
  const MessageLimits limits{1 << 20, 8};
  {
    capnp::MallocMessageBuilder m;
    build_call(m, 8);
    auto r = through_guard(l, m, limits, budget);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ((*r)->getRoot<capnp::rpc::Message>().getCall().getParams().getCapTable().size(), 8u);
  }
  capnp::MallocMessageBuilder m;
  build_call(m, 9);
  auto r = through_guard(l, m, limits, budget);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted);
  EXPECT_NE(r.error().message.find("9 capabilities, more than this connection's limit of 8"), std::string::npos)
      << r.error().message;
}

TEST(GuardedMessageStream, AnOversizedMessageIsRefusedAtItsSegmentTable) {
  Loop l;
  auto pipe = kj::newTwoWayPipe();
  GuardedMessageStream guard(*pipe.ends[1], MessageLimits{64 << 10, 4}, std::make_shared<ReceiveBudget>(1 << 30),
                             l.timer);
  // Only the segment table of a 1 GiB message, and then nothing: refused without waiting for (or
  // allocating) the body.
  auto header = table_bytes({1u << 27});
  auto written = pipe.ends[0]->write(header.data(), header.size()).eagerlyEvaluate([](kj::Exception&&) {});
  auto read = guard.tryReadMessage(nullptr, capnp::ReaderOptions());
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] { read.wait(l.wait); })) {
    const Error err = to_error(*e);
    EXPECT_EQ(err.code, ErrorCode::ResourceExhausted);
    EXPECT_NE(err.message.find("limit of 65536 bytes"), std::string::npos) << err.message;
    ASSERT_TRUE(guard.refusal());
    EXPECT_EQ(guard.refusal()->code, ErrorCode::ResourceExhausted);
  } else {
    ADD_FAILURE() << "a 1 GiB message was accepted with a 64 KiB limit";
  }
}

TEST(GuardedMessageStream, LimitsChangeForTheNextMessage) {
  Loop l;
  auto budget = std::make_shared<ReceiveBudget>(64 << 20);
  capnp::MallocMessageBuilder m;
  build_call(m, 0, 100 << 10);  // ~100 KiB
  EXPECT_FALSE(through_guard(l, m, MessageLimits{64 << 10, 4}, budget));
  EXPECT_TRUE(through_guard(l, m, MessageLimits{1 << 20, 4}, budget));
}

TEST(GuardedMessageStream, LargeMessagesAreChargedToTheBudgetUntilReleased) {
  Loop l;
  auto budget = std::make_shared<ReceiveBudget>(3 << 20);
  const MessageLimits limits{16 << 20, 4};
  {
    capnp::MallocMessageBuilder m;
    build_call(m, 0, 2 << 20);
    auto r = through_guard(l, m, limits, budget);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_GE(budget->used(), 2u << 20);  // held while the reader lives
    // A second such message does not fit beside it.
    auto r2 = through_guard(l, m, limits, budget);
    ASSERT_FALSE(r2);
    EXPECT_EQ(r2.error().code, ErrorCode::ResourceExhausted);
    EXPECT_NE(r2.error().message.find("receive buffers are full"), std::string::npos) << r2.error().message;
  }
  EXPECT_EQ(budget->used(), 0u);  // given back with the reader (and by the refused read)
  // Small messages are not charged.
  capnp::MallocMessageBuilder small;
  build_call(small, 1, 1000);
  auto r = through_guard(l, small, limits, budget);
  ASSERT_TRUE(r);
  EXPECT_EQ(budget->used(), 0u);
}

TEST(GuardedMessageStream, NoMessageIsReadWhileRepliesPileUpUnsent) {
  Loop l;
  auto pipe = kj::newTwoWayPipe();
  GuardedMessageStream guard(*pipe.ends[1], MessageLimits{1 << 20, 4}, std::make_shared<ReceiveBudget>(1 << 30),
                             l.timer);
  uint64_t unsent = kMaxUnsentBytes + 1;
  guard.set_unsent_bytes([&unsent] { return unsent; });
  capnp::MallocMessageBuilder m;
  build_call(m, 0);
  auto written = capnp::writeMessage(*pipe.ends[0], m).eagerlyEvaluate([](kj::Exception&&) {});
  auto read = guard.tryReadMessage(nullptr, capnp::ReaderOptions());
  l.timer.advanceTo(l.timer.now() + 50 * kj::MILLISECONDS);
  EXPECT_FALSE(read.poll(l.wait));  // the message is there, but the peer has not read its replies
  unsent = kMaxUnsentBytes;
  l.timer.advanceTo(l.timer.now() + 10 * kj::MILLISECONDS);
  ASSERT_TRUE(read.poll(l.wait));
  auto message = read.wait(l.wait);
  KJ_IF_MAYBE(got, message) {
    EXPECT_TRUE(got->reader->getRoot<capnp::rpc::Message>().isCall());
  } else {
    ADD_FAILURE() << "no message after the replies were sent";
  }
}

// Reads `calls` Call messages (each followed by its Finish when `finished`) through one guard;
// returns how many messages it delivered before refusing, and the refusal.
std::pair<int, std::optional<Error>> read_calls(Loop& l, unsigned calls, bool finished) {
  auto pipe = kj::newTwoWayPipe();
  GuardedMessageStream guard(*pipe.ends[1], MessageLimits{1 << 20, 4}, std::make_shared<ReceiveBudget>(1 << 30),
                             l.timer);
  kj::Vector<kj::Array<capnp::word>> messages;
  for (unsigned q = 0; q < calls; ++q) {
    capnp::MallocMessageBuilder call;
    build_call(call, 0);
    call.getRoot<capnp::rpc::Message>().getCall().setQuestionId(q);
    messages.add(capnp::messageToFlatArray(call));
    if (finished) {
      capnp::MallocMessageBuilder done;
      done.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(q);
      messages.add(capnp::messageToFlatArray(done));
    }
  }
  auto written = kj::evalLater([&]() -> kj::Promise<void> {
                   kj::Promise<void> chain = kj::READY_NOW;
                   for (auto& m : messages)
                     chain = chain.then([&] { return pipe.ends[0]->write(m.begin(), m.asBytes().size()); });
                   return chain.then([&] { pipe.ends[0]->shutdownWrite(); });
                 }).eagerlyEvaluate([](kj::Exception&&) {});
  int delivered = 0;
  std::optional<Error> refused;
  for (;;) {
    bool more = false;
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
      KJ_IF_MAYBE(m, guard.tryReadMessage(nullptr, capnp::ReaderOptions()).wait(l.wait)) {
        (void)m;
        more = true;
        ++delivered;
      }
    })) {
      refused = to_error(*e);
    }
    if (!more) break;
  }
  return {delivered, refused};
}

TEST(GuardedMessageStream, CallsNotFinishedAreLimited) {
  Loop l;
  auto [finished_delivered, finished_refused] = read_calls(l, kMaxOpenCalls + 10, true);
  EXPECT_EQ(finished_delivered, 2 * static_cast<int>(kMaxOpenCalls + 10));
  EXPECT_FALSE(finished_refused);
  auto [open_delivered, open_refused] = read_calls(l, kMaxOpenCalls + 10, false);
  EXPECT_EQ(open_delivered, static_cast<int>(kMaxOpenCalls));
  ASSERT_TRUE(open_refused);
  EXPECT_EQ(open_refused->code, ErrorCode::ResourceExhausted);
  EXPECT_NE(open_refused->message.find("more than 256 calls are open"), std::string::npos) << open_refused->message;
}

TEST(ReceiveBudget, ReservationsAddUpAndGiveBack) {
  auto budget = std::make_shared<ReceiveBudget>(100);
  ReceiveBudget::Reservation a, b;
  EXPECT_TRUE(a.grow(*budget, 60));
  EXPECT_FALSE(b.grow(*budget, 41));
  EXPECT_TRUE(b.grow(*budget, 40));
  EXPECT_EQ(budget->used(), 100u);
  EXPECT_FALSE(a.grow(*budget, 1));
  ReceiveBudget::Reservation c = std::move(a);
  EXPECT_EQ(a.bytes(), 0u);
  EXPECT_EQ(c.bytes(), 60u);
  c.reset();
  EXPECT_EQ(budget->used(), 40u);
  { ReceiveBudget::Reservation gone = std::move(b); }
  EXPECT_EQ(budget->used(), 0u);
}

TEST(ConnectionLimits, PerSourceAndTotal) {
  ConnectionLimits limits(3, 2);
  auto a1 = limits.admit("10.0.0.1");
  auto a2 = limits.admit("10.0.0.1");
  ASSERT_TRUE(a1);
  ASSERT_TRUE(a2);
  auto a3 = limits.admit("10.0.0.1");
  ASSERT_FALSE(a3);
  EXPECT_EQ(a3.error().code, ErrorCode::ResourceExhausted);
  EXPECT_NE(a3.error().message.find("from your address"), std::string::npos);
  auto b1 = limits.admit("10.0.0.2");
  ASSERT_TRUE(b1);
  auto c1 = limits.admit("10.0.0.3");
  ASSERT_FALSE(c1);
  EXPECT_NE(c1.error().message.find("3 connections, its limit"), std::string::npos);
  EXPECT_EQ(limits.total(), 3u);
  { auto gone = std::move(*a1); }  // a place given back
  EXPECT_EQ(limits.from("10.0.0.1"), 1u);
  EXPECT_TRUE(limits.admit("10.0.0.3"));  // admitted, and its slot released at once
  EXPECT_EQ(limits.total(), 2u);
  EXPECT_EQ(limits.from("10.0.0.3"), 0u);
}

TEST(ConnectionLimits, SourceKeys) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.7", &v4.sin_addr);
  EXPECT_EQ(source_key(reinterpret_cast<sockaddr*>(&v4), sizeof v4), "192.0.2.7");
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", &v6.sin6_addr);
  EXPECT_EQ(source_key(reinterpret_cast<sockaddr*>(&v6), sizeof v6), "2001:db8:1:2::/64");
  inet_pton(AF_INET6, "::ffff:192.0.2.7", &v6.sin6_addr);
  EXPECT_EQ(source_key(reinterpret_cast<sockaddr*>(&v6), sizeof v6), "192.0.2.7");
  EXPECT_EQ(source_key(reinterpret_cast<sockaddr*>(&v4), 2), "other");
}

}  // namespace
}  // namespace omni::net
