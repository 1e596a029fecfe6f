// TLS 1.3 over a kj::AsyncIoStream with peer-id authentication, implemented directly on OpenSSL.
//
// Why not kj::TlsContext: kj-tls 0.9 validates certificates only against CAs and host names and
// cannot be told "accept this self-signed Ed25519 certificate if its key hashes to peer id X". So
// OpenSSL runs here over memory BIOs pumped through the kj stream: every certificate chain is
// accepted during the handshake, and right after it the peer's certificate key (which TLS 1.3's
// CertificateVerify has proven the peer holds) is turned into its peer id and checked.
//
// Both sides always present their identity certificate (servers request client certificates), so
// a server learns every client's peer id (used by --allow-peers).
//
// Threading: a TlsContext may be shared; each stream lives on the kj event loop that created it.
// Errors inside promises are kj exceptions whose descriptions name the peer and what was wrong.
#pragma once

#include <kj/async-io.h>

#include <memory>
#include <string>

#include "base/result.h"
#include "net/identity.h"

namespace omni::net {

struct TlsPeer {
  kj::Own<kj::AsyncIoStream> stream;  // plaintext side of the connection
  std::string peer_id;                // the id of the key the peer proved it holds
};

class TlsContext {
 public:
  static Result<std::shared_ptr<TlsContext>> create(const Identity& identity);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Client side handshake over `inner`. When `expected_peer_id` is not empty the server must
  // present exactly that id, else the promise is broken with "peer id mismatch ...".
  kj::Promise<TlsPeer> connect(kj::Own<kj::AsyncIoStream> inner, std::string expected_peer_id);
  // Server side handshake; the client must present a certificate.
  kj::Promise<TlsPeer> accept(kj::Own<kj::AsyncIoStream> inner);

  const Identity& identity() const { return identity_; }

 private:
  explicit TlsContext(Identity identity) : identity_(std::move(identity)) {}
  kj::Promise<TlsPeer> handshake(kj::Own<kj::AsyncIoStream> inner, bool client, std::string expected_peer_id);
  Identity identity_;
  void* ctx_ = nullptr;  // SSL_CTX
};

}  // namespace omni::net
