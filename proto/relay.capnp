# OmniNode relay control protocol: how a node that cannot accept connections (behind NAT) stays
# reachable through a relay (docs/protocol.md, "Relay").
#
# A relayed node keeps one outbound control connection to the relay: TCP, the text line
# "OMNI-RELAY/1 REGISTER", then TLS 1.3 with the node's own identity key (so the relay knows which
# peer id registered: only the key's holder can register for its id), then Cap'n Proto RPC whose
# bootstrap capability is a RelayGate. The node registers once per control connection and pings.
#
# Clients never use this schema: a client connects to the relay with the text line
# "OMNI-RELAY/1 CONNECT <peer id>", the relay asks the node over this channel to dial back a fresh
# data connection ("OMNI-RELAY/1 ACCEPT <token>"), answers the client "OK" and splices the two TCP
# streams. TLS then runs end to end between client and node: the relay sees only ciphertext and
# cannot impersonate the node (the client checks the node's peer id).
#
# Errors are Cap'n Proto exceptions whose description is a sentence naming the limit or field.

@0xccf1d8cf344254c4;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("omni::proto");

const relayProtocolVersion :UInt32 = 1;
# Bumped on any incompatible change to this file or to the preamble lines.

interface RelayGate {
  # The relay's bootstrap capability on a control connection.

  registerNode @0 (protocolVersion :UInt32, dialer :RelayDialer) -> (registration :RelayRegistration, terms :RelayTerms);
  # Registers the TLS-proven peer id of this connection. protocolVersion: the node's
  # relayProtocolVersion (the relay refuses any other). dialer: the node's capability that the relay
  # calls for each client asking for this node. A newer registration of the same peer id replaces
  # an older one (whose control connection the relay then closes). Refused (`overloaded`) when the
  # relay already serves its maximum number of nodes. Dropping `registration` or the connection
  # unregisters.
}

struct RelayTerms {
  # What the relay expects of, and offers to, a registered node.
  keepaliveSeconds @0 :UInt32;
  # The node pings at least this often; the relay drops a registration silent for 3 times this.
  publicAddress @1 :Text;
  # "HOST:PORT" at which clients reach the relay; empty: the address the node dialed. The node
  # announces itself as "<its peer id>@relay:<publicAddress>".
  maxConnections @2 :UInt32;
  # Relayed connections to this node the relay keeps open at once; more are refused to clients.
  idleTimeoutSeconds @3 :UInt32;
  # The relay closes a relayed connection after this many seconds without a byte either way.
}

interface RelayRegistration {
  # Held by the registered node for as long as it wants to be reachable.

  ping @0 () -> (activeConnections :UInt32, bytesToNode :UInt64, bytesFromNode :UInt64);
  # Keepalive. activeConnections: relayed connections open to this node now; bytesToNode and
  # bytesFromNode: bytes relayed to and from the node over this registration so far.
}

interface RelayDialer {
  # Served by the node on its control connection.

  dial @0 (token :Data) -> ();
  # A client asks for this node: open a new TCP connection to the relay (the address the control
  # connection uses), send "OMNI-RELAY/1 ACCEPT <token as 32 lower-case hex digits>\n" and then
  # serve the node protocol on it (TLS server side) as on an accepted connection. token: 16 random
  # bytes, single use. Returns once that connection is open and the line sent; fails (`overloaded`)
  # when the node already serves its own maximum of relayed connections.
}
