// Peer addresses, relayed ones in particular: what parses, what is refused and why, and that the
// forms round-trip through to_string() and a chain's hop address (host_port()).
#include <gtest/gtest.h>

#include "net/identity.h"
#include "net/peer_address.h"

namespace omni::net {
namespace {

std::string an_id() { return Identity::generate()->peer_id(); }

TEST(PeerAddress, RelayedNeedsIdAndRoundTrips) {
  const std::string id = an_id();
  auto a = parse_peer_address(id + "@relay:10.0.0.1:7100");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->relayed);
  EXPECT_EQ(a->peer_id, id);
  EXPECT_EQ(a->host, "10.0.0.1");
  EXPECT_EQ(a->port, 7100);
  EXPECT_EQ(a->dial_host_port(), "10.0.0.1:7100");
  EXPECT_EQ(a->host_port(), "relay:10.0.0.1:7100");
  EXPECT_EQ(a->to_string(), id + "@relay:10.0.0.1:7100");
  auto back = parse_peer_address(a->to_string());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->relayed);
  EXPECT_EQ(back->dial_host_port(), a->dial_host_port());

  auto v6 = parse_peer_address(id + "@relay:[::1]:9");
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->host_port(), "relay:[::1]:9");

  auto no_id = parse_peer_address("relay:10.0.0.1:7100");
  ASSERT_FALSE(no_id.ok());
  EXPECT_EQ(no_id.error().code, ErrorCode::InvalidArgument) << no_id.error().message;
  EXPECT_NE(no_id.error().message.find("needs the node's peer id"), std::string::npos) << no_id.error().message;
}

TEST(PeerAddress, DirectFormsUnchanged) {
  const std::string id = an_id();
  auto a = parse_peer_address(id + "@host.example:7000");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->relayed);
  EXPECT_EQ(a->host_port(), "host.example:7000");
  EXPECT_EQ(a->dial_host_port(), "host.example:7000");
  auto tofu = parse_peer_address("[::1]:9");
  ASSERT_TRUE(tofu.ok());
  EXPECT_EQ(tofu->host_port(), "[::1]:9");
  EXPECT_TRUE(tofu->peer_id.empty());
}

TEST(PeerAddress, RefusesMalformedRelayForms) {
  const std::string id = an_id();
  for (const std::string& bad : {id + "@relay:", id + "@relay:host", id + "@relay::7000", id + "@relay:host:0",
                                id + "@relay:relay:host:7000", id + "@relay:host:99999", id + "@relay:a:b:7000",
                                std::string("nope@relay:host:7000")})
    EXPECT_FALSE(parse_peer_address(bad).ok()) << bad;
  // Unbracketed IPv6 is ambiguous with "relay:" and ports: refused with the fix in the message.
  auto v6 = parse_peer_address("::1:7000");
  ASSERT_FALSE(v6.ok());
  EXPECT_EQ(v6.error().code, ErrorCode::InvalidArgument) << v6.error().message;
  EXPECT_NE(v6.error().message.find("brackets"), std::string::npos) << v6.error().message;
}

TEST(PeerAddress, ListMixesDirectAndRelayed) {
  const std::string a = an_id(), b = an_id();
  auto list = parse_peer_list(a + "@127.0.0.1:7001," + b + "@relay:127.0.0.1:7100");
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  EXPECT_FALSE((*list)[0].relayed);
  EXPECT_TRUE((*list)[1].relayed);
}

TEST(PeerAddress, HopAddressKeepsTheRelay) {
  // A chain's hop travels as (host_port(), peer id) and is read back with parse_listen_address.
  const std::string id = an_id();
  auto a = parse_peer_address(id + "@relay:10.1.2.3:7100");
  ASSERT_TRUE(a.ok());
  auto hop = parse_listen_address(a->host_port());
  ASSERT_TRUE(hop.ok()) << hop.error().message;
  EXPECT_TRUE(hop->relayed);
  EXPECT_EQ(hop->dial_host_port(), "10.1.2.3:7100");
}

}  // namespace
}  // namespace omni::net
