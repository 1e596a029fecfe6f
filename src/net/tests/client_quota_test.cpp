// ClientQuota: a client is limited by its peer id and, separately, by its address, so fresh peer
// ids from one address do not get around the limit; leases give their unit back.
#include "net/client_quota.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <optional>
#include <vector>

namespace omni::net {
namespace {

TEST(ClientQuota, OnePeerIdIsLimitedWhateverItsAddress) {
  ClientQuota q("sessions", "--max-sessions-per-client", 2);
  auto a = q.acquire({"peer1", "10.0.0.1"});
  auto b = q.acquire({"peer1", "10.0.0.2"});
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = q.acquire({"peer1", "10.0.0.3"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::ResourceExhausted);
  EXPECT_NE(c.error().message.find("peer peer1 holds 2 of the 2"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("--max-sessions-per-client"), std::string::npos);
  EXPECT_TRUE(q.acquire({"peer2", "10.0.0.3"}).ok());
}

TEST(ClientQuota, FreshPeerIdsFromOneAddressShareItsLimit) {
  ClientQuota q("sessions", "--max-sessions-per-client", 3);
  std::vector<ClientQuota::Lease> held;
  int refused = 0;
  for (int i = 0; i < 50; ++i) {
    auto l = q.acquire({"anon" + std::to_string(i), "192.0.2.9"});
    if (l) {
      held.push_back(std::move(*l));
    } else {
      EXPECT_EQ(l.error().code, ErrorCode::ResourceExhausted);
      EXPECT_NE(l.error().message.find("address 192.0.2.9 holds 3 of the 3"), std::string::npos);
      ++refused;
    }
  }
  EXPECT_EQ(held.size(), 3u);
  EXPECT_EQ(refused, 47);
  EXPECT_EQ(q.held_by_address("192.0.2.9"), 3u);
  EXPECT_TRUE(q.acquire({"anon0", "192.0.2.10"}).ok());  // another address: served
}

TEST(ClientQuota, LeasesGiveBackTheirUnit) {
  ClientQuota q("sinks", "--max-sinks-per-client", 1);
  std::optional<ClientQuota::Lease> lease;
  {
    auto l = q.acquire({"p", "a"});
    ASSERT_TRUE(l.ok());
    lease = std::move(*l);
  }
  EXPECT_EQ(q.held_by_peer("p"), 1u);  // the moved-from lease gave nothing back
  EXPECT_FALSE(q.acquire({"p", "b"}).ok());
  ClientQuota::Lease moved = std::move(*lease);
  lease.reset();
  EXPECT_EQ(q.held_by_peer("p"), 1u);
  moved = ClientQuota::Lease();
  EXPECT_EQ(q.held_by_peer("p"), 0u);
  EXPECT_EQ(q.held_by_address("a"), 0u);
  EXPECT_TRUE(q.acquire({"p", "b"}).ok());
}

TEST(ClientQuota, NoAddressCountsByPeerIdOnly) {
  ClientQuota q("sessions", "--max-sessions-per-client", 1);
  auto a = q.acquire({"p1", ""});
  auto b = q.acquire({"p2", ""});
  EXPECT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(q.held_by_address(""), 0u);
}

TEST(ClientQuota, ZeroIsNoLimit) {
  ClientQuota q("sessions", "--max-sessions-per-client", 0);
  std::vector<ClientQuota::Lease> held;
  for (int i = 0; i < 100; ++i) held.push_back(std::move(*q.acquire({"p", "a"})));
  EXPECT_EQ(q.held_by_peer("p"), 100u);
}

std::string key4(const char* text) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, text, &a.sin_addr);
  return address_key(reinterpret_cast<sockaddr*>(&a), sizeof a);
}

std::string key6(const char* text) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  inet_pton(AF_INET6, text, &a.sin6_addr);
  return address_key(reinterpret_cast<sockaddr*>(&a), sizeof a);
}

TEST(ClientQuota, AddressKeys) {
  EXPECT_EQ(key4("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(key6("::ffff:192.0.2.7"), "192.0.2.7");  // a v4 client on a dual-stack socket
  // One host usually holds a whole /64: all of it is one client.
  EXPECT_EQ(key6("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(key6("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
  EXPECT_NE(key6("2001:db8:1:3::1"), key6("2001:db8:1:2::1"));
  sockaddr a{};
  a.sa_family = AF_UNIX;
  EXPECT_EQ(address_key(&a, sizeof a), "");
}

}  // namespace
}  // namespace omni::net
