// GuardedMessageStream: the capnp MessageStream a node reads its RPC messages through. It checks
// each message's framing before allocating anything for it, and the message itself before the RPC
// system acts on it:
//   - the segment table: at most kMaxSegments segments, and the total size the table declares at
//     most MessageLimits::max_bytes (small before `hello`, the largest legitimate hidden-state
//     message after), so a peer cannot make the node allocate for a message it will not be allowed
//     to send;
//   - the body is read in chunks, each charged to the process-wide ReceiveBudget before it is read
//     (messages up to kUnbudgetedMessageBytes are not charged: the per-connection and connection
//     count limits bound them); the charge is given back when the RPC system drops the message;
//   - the capability table of a Call or Return: at most MessageLimits::max_caps entries (the RPC
//     system builds an object per entry, which costs far more than the entry's 16 bytes).
// A message that fails a check ends the connection (capnp cannot skip a message): tryReadMessage
// throws an RPC error (net/errors.h) with ResourceExhausted (too big, budget spent, too many
// capabilities) or Corruption (framing), which capnp sends to the peer as its Abort reason.
//
// Writes go straight to the stream. Lives on the event loop thread of its stream.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "net/receive_budget.h"
#include "proto/node.capnp.h"

namespace omni::net {

struct MessageLimits {
  uint64_t max_bytes = 0;  // largest message: segment table plus segments
  uint32_t max_caps = 0;   // capability-table entries of one Call or Return
};

// capnp's own reader refuses more segments than this.
inline constexpr uint32_t kMaxSegments = 512;
// Small messages (token-by-token generation, control calls) are not charged to the ReceiveBudget,
// so a spent budget delays only large transfers, never a generation step.
inline constexpr uint64_t kUnbudgetedMessageBytes = 64 << 10;

// The segment table of one message (capnp's standard framing).
struct SegmentTable {
  std::vector<uint32_t> words;  // size of each segment, in 8-byte words
  uint64_t message_bytes = 0;   // the table and every segment
};
// The number of segments the first 8 bytes of a message declare, or Corruption past kMaxSegments.
Result<uint32_t> segment_count(std::span<const uint8_t, 8> first_word);
// Bytes the segment table of `count` segments takes (a multiple of 8).
uint64_t segment_table_bytes(uint32_t count);
// Parses a whole segment table (segment_table_bytes(count) bytes, starting with the first word)
// and checks the message's total size against `max_bytes` (ResourceExhausted, naming both sizes).
Result<SegmentTable> parse_segment_table(std::span<const uint8_t> table, uint64_t max_bytes);
// The capability tables of an RPC message against `limits.max_caps` (ResourceExhausted). Throws
// capnp's own exception when the message is malformed.
Result<void> check_rpc_message(capnp::MessageReader& message, const MessageLimits& limits);

class GuardedMessageStream final : public capnp::MessageStream {
 public:
  using Clock = std::chrono::steady_clock;
  GuardedMessageStream(kj::AsyncIoStream& stream, MessageLimits limits, std::shared_ptr<ReceiveBudget> budget);

  // Applies to the next message read (e.g. after `hello`).
  void set_limits(const MessageLimits& limits) { limits_ = limits; }
  const MessageLimits& limits() const { return limits_; }
  // When the last whole message was read or the last write began.
  Clock::time_point last_activity() const { return last_activity_; }
  // Set while a message is partly read: when its latest bytes arrived.
  std::optional<Clock::time_point> partial_since() const { return partial_since_; }
  // Why the last message was refused (what ended the connection), if one was.
  const std::optional<Error>& refusal() const { return refusal_; }

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fd_space, capnp::ReaderOptions options = capnp::ReaderOptions(),
      kj::ArrayPtr<capnp::word> scratch_space = nullptr) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  kj::Promise<void> end() override;

 private:
  struct Incoming;
  kj::Promise<void> read_table(Incoming& in);
  kj::Promise<void> read_body(Incoming& in, uint64_t offset);
  [[noreturn]] void refuse(const Error& why);

  kj::AsyncIoStream& stream_;
  capnp::AsyncIoMessageStream writer_;
  MessageLimits limits_;
  std::shared_ptr<ReceiveBudget> budget_;
  Clock::time_point last_activity_ = Clock::now();
  std::optional<Clock::time_point> partial_since_;
  std::optional<Error> refusal_;
};

}  // namespace omni::net
