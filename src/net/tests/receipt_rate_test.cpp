// ReceiptRate: a client is held to the per-minute limit by peer id and by address, each on its own,
// a refused take takes nothing, and a new minute starts afresh.
#include <gtest/gtest.h>

#include "net/receipt_rate.h"

namespace omni::net {
namespace {

TEST(ReceiptRate, PerPeerAndPerAddressPerMinute) {
  ReceiptRate rate(10);
  const ClientKey a{"peer-a", "192.0.2.1"}, a_elsewhere{"peer-a", "192.0.2.2"}, b_same_host{"peer-b", "192.0.2.1"};
  EXPECT_TRUE(rate.take(a, 6, 60).ok());
  auto r = rate.take(a, 5, 61);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::ResourceExhausted);
  EXPECT_TRUE(rate.take(a, 4, 62).ok());  // the refused 5 were not counted
  EXPECT_FALSE(rate.take(a_elsewhere, 1, 63).ok());  // same peer id, another address
  EXPECT_FALSE(rate.take(b_same_host, 1, 64).ok());  // fresh id, same address
  EXPECT_TRUE(rate.take(ClientKey{"peer-c", ""}, 10, 65).ok());  // no address: by peer id only
  EXPECT_TRUE(rate.take(a, 10, 120).ok());  // the next minute
  EXPECT_FALSE(rate.take(a, 11, 180).ok());  // more than a minute's worth at once
}

}  // namespace
}  // namespace omni::net
