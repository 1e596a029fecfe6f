// MoveDrain's rule on scripted observations: a move waits for open sessions, for at most the
// timeout, and each pending move gets its own full wait.
#include "swarm/move_drain.h"

#include <gtest/gtest.h>

namespace omni::swarm {
namespace {

using Step = MoveDrain::Step;
using std::chrono::seconds;

const MoveDrain::Clock::time_point t0{};

TEST(MoveDrain, NothingPendingIsNothingToDo) {
  MoveDrain drain(seconds(30));
  EXPECT_EQ(drain.step(false, 0, t0), Step::kNone);
  EXPECT_EQ(drain.step(false, 5, t0 + seconds(100)), Step::kNone);
}

TEST(MoveDrain, MovesAtOnceWithNoSessionOpen) {
  MoveDrain drain(seconds(30));
  EXPECT_EQ(drain.step(true, 0, t0), Step::kMove);
}

TEST(MoveDrain, WaitsForOpenSessionsThenMoves) {
  MoveDrain drain(seconds(30));
  EXPECT_EQ(drain.step(true, 2, t0), Step::kStartWaiting);
  EXPECT_EQ(drain.step(true, 2, t0 + seconds(10)), Step::kWait);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(20)), Step::kWait);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(30)), Step::kWait);  // the timeout itself is still allowed
  EXPECT_EQ(drain.step(true, 0, t0 + seconds(31)), Step::kMove);
}

TEST(MoveDrain, GivesUpWhenSessionsOutlastTheTimeout) {
  MoveDrain drain(seconds(30));
  EXPECT_EQ(drain.step(true, 1, t0), Step::kStartWaiting);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(29)), Step::kWait);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(31)), Step::kGiveUp);
  // The next pending move (a later decision) waits its own full timeout.
  EXPECT_EQ(drain.step(false, 1, t0 + seconds(40)), Step::kNone);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(50)), Step::kStartWaiting);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(79)), Step::kWait);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(81)), Step::kGiveUp);
}

TEST(MoveDrain, AMoveCancelledElsewhereEndsTheWait) {
  MoveDrain drain(seconds(30));
  EXPECT_EQ(drain.step(true, 1, t0), Step::kStartWaiting);
  EXPECT_EQ(drain.step(false, 1, t0 + seconds(25)), Step::kNone);
  // Without the reset this would be a give-up (40 s after the first wait began).
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(40)), Step::kStartWaiting);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(60)), Step::kWait);
}

TEST(MoveDrain, ACarriedOutMoveEndsTheWait) {
  MoveDrain drain(seconds(30));
  EXPECT_EQ(drain.step(true, 1, t0), Step::kStartWaiting);
  EXPECT_EQ(drain.step(true, 0, t0 + seconds(20)), Step::kMove);
  EXPECT_EQ(drain.step(true, 1, t0 + seconds(45)), Step::kStartWaiting);
}

}  // namespace
}  // namespace omni::swarm
