// MoveDrain: when a node that decided to move its blocks (Membership::pending_move) may carry the
// move out. Reloading the blocks ends every session the node holds, so a move waits until no
// session is open; sessions still open `timeout` after the wait began make it give the move up
// (Membership::cancel_move), and a later check of the swarm may decide again.
//
// A pure rule over what the caller observes (is a move pending, how many sessions are open, the
// time), so it is tested without a network; the node's event loop asks step() a few times a
// second. Not thread-safe: one caller.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace omni::swarm {

class MoveDrain {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Step {
    kNone,          // no move pending: nothing to do
    kMove,          // no session open: carry the move out now
    kStartWaiting,  // sessions are open: the wait begins now (say so once)
    kWait,          // still waiting within the timeout
    kGiveUp,        // sessions still open after the timeout: cancel this move
  };

  explicit MoveDrain(Clock::duration timeout) : timeout_(timeout) {}

  // What to do now. A pending move that disappears (cancelled elsewhere) or is carried out, and a
  // give-up, end the wait: the next pending move waits its full timeout again.
  Step step(bool move_pending, uint32_t open_sessions, Clock::time_point now) {
    if (!move_pending) {
      waiting_since_.reset();
      return Step::kNone;
    }
    if (open_sessions == 0) {
      waiting_since_.reset();
      return Step::kMove;
    }
    if (!waiting_since_) {
      waiting_since_ = now;
      return Step::kStartWaiting;
    }
    if (now - *waiting_since_ > timeout_) {
      waiting_since_.reset();
      return Step::kGiveUp;
    }
    return Step::kWait;
  }

 private:
  Clock::duration timeout_;
  std::optional<Clock::time_point> waiting_since_;
};

}  // namespace omni::swarm
