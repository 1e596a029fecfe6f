#include "net/guarded_message_stream.h"

#include <capnp/rpc.capnp.h>

#include <algorithm>
#include <cstring>

#include "net/errors.h"

namespace omni::net {
namespace {

uint32_t read_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // little-endian wire, little-endian host (see hidden_codec.cpp)
  return v;
}

// Chunks of the body charged to the budget one at a time: what a peer can make the node hold
// beyond what it has actually sent.
constexpr uint64_t kBodyChunkBytes = 1 << 20;

// Owns the words of a message read off the stream and its charge to the budget; the segment
// pointers live in a base constructed before the reader that refers to them.
struct MessageBuffers {
  kj::Array<capnp::word> words;
  kj::Array<kj::ArrayPtr<const capnp::word>> segments;
  ReceiveBudget::Reservation charge;
};

class OwnedMessageReader final : private MessageBuffers, public capnp::SegmentArrayMessageReader {
 public:
  OwnedMessageReader(MessageBuffers buffers, capnp::ReaderOptions options)
      : MessageBuffers(kj::mv(buffers)), capnp::SegmentArrayMessageReader(MessageBuffers::segments.asPtr(), options) {}
};

}  // namespace

Result<uint32_t> segment_count(std::span<const uint8_t, 8> first_word) {
  const uint64_t count = uint64_t{read_u32(first_word.data())} + 1;
  if (count > kMaxSegments)
    return Error{ErrorCode::Corruption, "a message declares " + std::to_string(count) + " segments, more than " +
                                            std::to_string(kMaxSegments)};
  return static_cast<uint32_t>(count);
}

uint64_t segment_table_bytes(uint32_t count) { return (uint64_t{count} / 2 + 1) * 8; }

Result<SegmentTable> parse_segment_table(std::span<const uint8_t> table, uint64_t max_bytes) {
  if (table.size() < 8) return Error{ErrorCode::Corruption, "a segment table is shorter than 8 bytes"};
  auto count = segment_count(table.first<8>());
  if (!count) return count.error();
  if (table.size() != segment_table_bytes(*count))
    return Error{ErrorCode::Corruption, "a segment table of " + std::to_string(*count) + " segments takes " +
                                            std::to_string(segment_table_bytes(*count)) + " bytes, not " +
                                            std::to_string(table.size())};
  SegmentTable t;
  t.message_bytes = table.size();
  for (uint32_t i = 0; i < *count; ++i) {
    const uint32_t words = read_u32(table.data() + 4 + 4 * size_t{i});
    t.words.push_back(words);
    t.message_bytes += uint64_t{words} * 8;  // at most 512 x 32 GiB: no overflow
  }
  if (t.message_bytes > max_bytes)
    return Error{ErrorCode::ResourceExhausted, "a message of " + std::to_string(t.message_bytes) +
                                                   " bytes exceeds this connection's limit of " +
                                                   std::to_string(max_bytes) + " bytes"};
  return t;
}

Result<void> check_rpc_message(capnp::MessageReader& message, const MessageLimits& limits) {
  auto root = message.getRoot<capnp::rpc::Message>();
  uint64_t caps = 0;
  switch (root.which()) {
    case capnp::rpc::Message::CALL: caps = root.getCall().getParams().getCapTable().size(); break;
    case capnp::rpc::Message::RETURN: {
      auto ret = root.getReturn();
      if (ret.isResults()) caps = ret.getResults().getCapTable().size();
      break;
    }
    default: break;  // the other messages carry at most one capability
  }
  if (caps > limits.max_caps)
    return Error{ErrorCode::ResourceExhausted, "a message carries " + std::to_string(caps) +
                                                   " capabilities, more than this connection's limit of " +
                                                   std::to_string(limits.max_caps)};
  return {};
}

struct GuardedMessageStream::Incoming {
  uint8_t first[8];
  kj::Array<uint8_t> table;
  SegmentTable segments;
  MessageBuffers buffers;
  capnp::ReaderOptions options;
  MessageLimits limits;
};

GuardedMessageStream::GuardedMessageStream(kj::AsyncIoStream& stream, MessageLimits limits,
                                           std::shared_ptr<ReceiveBudget> budget, kj::Timer& timer)
    : stream_(stream), writer_(stream), limits_(limits), budget_(std::move(budget)), timer_(timer) {}

kj::Promise<void> GuardedMessageStream::until_sent() {
  if (!unsent_ || unsent_() <= kMaxUnsentBytes) return kj::READY_NOW;
  return timer_.afterDelay(10 * kj::MILLISECONDS).then([this] { return until_sent(); });
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> GuardedMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd>, capnp::ReaderOptions options, kj::ArrayPtr<capnp::word>) {
  auto in = kj::heap<Incoming>();
  Incoming& ref = *in;
  return until_sent()
      .then([this, &ref] { return stream_.tryRead(ref.first, 8, 8); })
      .then([this, &ref, options](size_t n) -> kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> {
        if (n == 0) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);  // clean end between messages
        if (n < 8) throw_rpc_error(ErrorCode::Unavailable, "the peer closed the connection inside a message");
        partial_since_ = Clock::now();
        // The limits in force when the message starts (not when the read was posted, which is
        // before the previous message was handled) apply to all of it.
        ref.limits = limits_;
        ref.options = options;
        // The reader may traverse each word a few times (the RPC system, then the handler), no more.
        ref.options.traversalLimitInWords = std::min<uint64_t>(options.traversalLimitInWords, ref.limits.max_bytes / 2);
        return read_table(ref).then([this, &ref]() -> kj::Maybe<capnp::MessageReaderAndFds> {
          auto reader = kj::heap<OwnedMessageReader>(kj::mv(ref.buffers), ref.options);
          if (auto checked = check_rpc_message(*reader, ref.limits); !checked) refuse(checked.error());
          count_calls(*reader);
          partial_since_.reset();
          last_activity_ = Clock::now();
          return capnp::MessageReaderAndFds{kj::mv(reader), nullptr};
        });
      })
      .attach(kj::mv(in));
}

kj::Promise<void> GuardedMessageStream::read_table(Incoming& in) {
  auto count = segment_count(std::span<const uint8_t, 8>(in.first, 8));
  if (!count) refuse(count.error());
  const uint64_t table_bytes = segment_table_bytes(*count);
  in.table = kj::heapArray<uint8_t>(table_bytes);
  std::memcpy(in.table.begin(), in.first, 8);
  auto rest = table_bytes > 8 ? stream_.read(in.table.begin() + 8, table_bytes - 8) : kj::Promise<void>(kj::READY_NOW);
  return rest.then([this, &in]() -> kj::Promise<void> {
    auto table = parse_segment_table(std::span<const uint8_t>(in.table.begin(), in.table.size()), in.limits.max_bytes);
    if (!table) refuse(table.error());
    in.segments = std::move(*table);
    uint64_t words = 0;
    for (uint32_t w : in.segments.words) words += w;
    // Allocated now, filled (and so made resident) only as the bytes arrive.
    in.buffers.words = kj::heapArray<capnp::word>(words);
    in.buffers.segments = kj::heapArray<kj::ArrayPtr<const capnp::word>>(in.segments.words.size());
    uint64_t at = 0;
    for (size_t i = 0; i < in.segments.words.size(); ++i) {
      in.buffers.segments[i] = kj::arrayPtr(in.buffers.words.begin() + at, in.segments.words[i]);
      at += in.segments.words[i];
    }
    return read_body(in, 0);
  });
}

kj::Promise<void> GuardedMessageStream::read_body(Incoming& in, uint64_t offset) {
  const uint64_t total = in.buffers.words.size() * sizeof(capnp::word);
  if (offset == total) return kj::READY_NOW;
  const uint64_t chunk = std::min(kBodyChunkBytes, total - offset);
  if (in.segments.message_bytes > kUnbudgetedMessageBytes && !in.buffers.charge.grow(*budget_, chunk))
 refuse(Error{ErrorCode::ResourceExhausted,
                    "the node's receive buffers are full (" + std::to_string(budget_->used() >> 20) + " of " +
                        std::to_string(budget_->limit() >> 20) + " MiB held by messages of all its connections); " +
                        "send again later or in smaller messages"});
  auto* into = reinterpret_cast<kj::byte*>(in.buffers.words.begin()) + offset;
  return stream_.tryRead(into, chunk, chunk).then([this, &in, offset, chunk](size_t n) -> kj::Promise<void> {
    if (n < chunk) throw_rpc_error(ErrorCode::Unavailable, "the peer closed the connection inside a message");
    partial_since_ = Clock::now();
    return read_body(in, offset + chunk);
  });
}

void GuardedMessageStream::count_calls(capnp::MessageReader& message) {
  auto root = message.getRoot<capnp::rpc::Message>();
  uint32_t opened = 0;
  switch (root.which()) {
    case capnp::rpc::Message::CALL: opened = root.getCall().getQuestionId(); break;
    case capnp::rpc::Message::BOOTSTRAP: opened = root.getBootstrap().getQuestionId(); break;
    case capnp::rpc::Message::FINISH: open_calls_.erase(root.getFinish().getQuestionId()); return;
    default: return;
  }
  open_calls_.insert(opened);  // a reused id is the RPC system's to refuse
  if (open_calls_.size() > kMaxOpenCalls)
    refuse(Error{ErrorCode::ResourceExhausted, "more than " + std::to_string(kMaxOpenCalls) +
                                                   " calls are open on this connection (answered but not "
                                                   "finished, or still running); finish some first"});
}

void GuardedMessageStream::refuse(const Error& why) {
  refusal_ = why;
  throw_rpc_error(why);
}

kj::Promise<void> GuardedMessageStream::writeMessage(kj::ArrayPtr<const int> fds,
                                                     kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  last_activity_ = Clock::now();
  return writer_.writeMessage(fds, segments);
}

kj::Promise<void> GuardedMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  last_activity_ = Clock::now();
  return writer_.writeMessages(messages);
}

kj::Maybe<int> GuardedMessageStream::getSendBufferSize() { return writer_.getSendBufferSize(); }

kj::Promise<void> GuardedMessageStream::end() { return writer_.end(); }

}  // namespace omni::net
