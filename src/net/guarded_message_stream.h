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
//   - calls not finished: the RPC system keeps every answer until the caller sends Finish for it,
//     so a peer may have at most kMaxOpenCalls calls (and bootstraps) not finished at once;
//   - replies not read: while the RPC system's queue of outgoing messages holds more than
//     kMaxUnsentBytes (set_unsent_bytes), no further message is read, so a peer that sends calls
//     but never reads the answers stops being served instead of filling the node's memory.
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
#include <functional>
#include <memory>
#include <optional>
#include <set>
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
// Calls a peer may have open on one connection (far more than a client or node has in flight).
inline constexpr uint32_t kMaxOpenCalls = 256;
// Outgoing bytes queued on a connection past which it is not read from (see above).
inline constexpr uint64_t kMaxUnsentBytes = 1 << 20;
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
  // `timer`: to wait for the outgoing queue to drain.
  GuardedMessageStream(kj::AsyncIoStream& stream, MessageLimits limits, std::shared_ptr<ReceiveBudget> budget,
                       kj::Timer& timer);
  // How many bytes of outgoing messages wait to be sent (TwoPartyVatNetwork::getCurrentQueueSize),
  // which the network over this stream knows; unset, reads never wait.
  void set_unsent_bytes(std::function<uint64_t()> unsent) { unsent_ = std::move(unsent); }

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
  kj::Promise<void> until_sent();
  void count_calls(capnp::MessageReader& message);
  kj::Promise<void> read_table(Incoming& in);
  kj::Promise<void> read_body(Incoming& in, uint64_t offset);
  [[noreturn]] void refuse(const Error& why);

  kj::AsyncIoStream& stream_;
  capnp::AsyncIoMessageStream writer_;
  MessageLimits limits_;
  std::shared_ptr<ReceiveBudget> budget_;
  kj::Timer& timer_;
  std::function<uint64_t()> unsent_;
  Clock::time_point last_activity_ = Clock::now();
  std::optional<Clock::time_point> partial_since_;
  std::optional<Error> refusal_;
  std::set<uint32_t> open_calls_;  // question ids of the peer's calls and bootstraps not yet finished
};

}  // namespace omni::net
