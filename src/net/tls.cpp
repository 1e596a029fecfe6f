#include "net/tls.h"

#include "net/errors.h"
#include "net/peer_id.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <climits>
#include <kj/debug.h>

namespace omni::net {
namespace {

std::string ssl_error_text() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? "TLS error" : text;
}

// Identity is checked after the handshake (see tls.h); here every chain is accepted.
int accept_any_certificate(int, X509_STORE_CTX*) { return 1; }

// The plaintext stream: OpenSSL reads ciphertext from `in_` and writes it to `out_` (memory BIOs);
// this class moves bytes between those BIOs and the inner stream. All on one event loop thread.
class TlsStream final : public kj::AsyncIoStream {
 public:
  TlsStream(kj::Own<kj::AsyncIoStream> inner, SSL* ssl) : inner_(kj::mv(inner)), ssl_(ssl) {
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    KJ_ASSERT(in_ && out_, "out of memory for TLS buffers");
    SSL_set_bio(ssl_, in_, out_);  // ssl_ owns both BIOs now
  }
  ~TlsStream() noexcept(false) { SSL_free(ssl_); }

  SSL* ssl() { return ssl_; }

  kj::Promise<void> handshake() {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) return flush();
    int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) {
      return flush().then([this] { return fill(); }).then([this](bool eof) -> kj::Promise<void> {
        if (eof) throw_rpc_error(kj::Exception::Type::DISCONNECTED, "the peer closed the connection during the TLS handshake");
        return handshake();
      });
    }
    // Send the alert (if any) so the peer learns why, then fail.
    std::string why = ssl_error_text();
    return flush().then([why]() -> kj::Promise<void> { throw_rpc_error("TLS handshake failed: " + why); });
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return read_loop(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    encrypt(static_cast<const kj::byte*>(buffer), size);
    return flush();
  }

  // All pieces become TLS records first, then one flush: one inner write instead of one per piece.
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    for (auto& piece : pieces) encrypt(piece.begin(), piece.size());
    return flush();
  }

  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }

  void shutdownWrite() override {
    SSL_shutdown(ssl_);
    // The close_notify goes out before the inner shutdown; failures here mean the peer is gone.
    tail_ = flush().then([this] { inner_->shutdownWrite(); }, [](kj::Exception&&) {}).fork();
  }

  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override { inner_->getsockname(addr, length); }
  void getpeername(struct sockaddr* addr, kj::uint* length) override { inner_->getpeername(addr, length); }

 private:
  // Turns plaintext into TLS records in the outgoing memory BIO (which takes everything).
  void encrypt(const kj::byte* p, size_t size) {
    while (size > 0) {
      int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX / 2));
      ERR_clear_error();
      int r = SSL_write(ssl_, p, chunk);
      if (r <= 0) throw_rpc_error(kj::Exception::Type::DISCONNECTED, "TLS write failed: " + ssl_error_text());
      p += r;
      size -= static_cast<size_t>(r);
    }
  }

  kj::Promise<size_t> read_loop(kj::byte* buffer, size_t min_bytes, size_t max_bytes, size_t done) {
    while (done < min_bytes || done == 0) {
      if (done >= max_bytes) break;
      ERR_clear_error();
      int r = SSL_read(ssl_, buffer + done, static_cast<int>(std::min<size_t>(max_bytes - done, INT_MAX / 2)));
      if (r > 0) {
        done += static_cast<size_t>(r);
        if (done >= min_bytes) break;
        continue;
      }
      int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_ZERO_RETURN) return done;  // close_notify: clean end of stream
      if (err != SSL_ERROR_WANT_READ) throw_rpc_error(kj::Exception::Type::DISCONNECTED, "TLS read failed: " + ssl_error_text());
      if (eof_) return done;  // the connection ended without close_notify: callers see a short read
      return flush().then([this] { return fill(); }).then([this, buffer, min_bytes, max_bytes, done](bool) {
        return read_loop(buffer, min_bytes, max_bytes, done);
      });
    }
    // TLS 1.3 may answer what it read (key updates); keep those bytes moving.
    if (BIO_ctrl_pending(out_) > 0) {
      return flush().then([done] { return done; });
    }
    return done;
  }

  // Reads some ciphertext from the inner stream into OpenSSL; resolves to true at end of stream.
  kj::Promise<bool> fill() {
    return inner_->tryRead(read_buffer_.begin(), 1, read_buffer_.size()).then([this](size_t n) {
      if (n == 0) {
        eof_ = true;
        return true;
      }
      BIO_write(in_, read_buffer_.begin(), static_cast<int>(n));
      return false;
    });
  }

  // Sends everything OpenSSL has produced, after whatever was queued before (writes stay ordered).
  kj::Promise<void> flush() {
    size_t pending = BIO_ctrl_pending(out_);
    if (pending > 0) {
      auto data = kj::heapArray<kj::byte>(pending);
      BIO_read(out_, data.begin(), static_cast<int>(pending));
      tail_ = tail_.addBranch()
                  .then([this, data = kj::mv(data)]() mutable {
                    auto promise = inner_->write(data.begin(), data.size());
                    return promise.attach(kj::mv(data));
                  })
                  .fork();
    }
    return tail_.addBranch();
  }

  kj::Own<kj::AsyncIoStream> inner_;
  SSL* ssl_;
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;
  bool eof_ = false;
  kj::ForkedPromise<void> tail_ = kj::Promise<void>(kj::READY_NOW).fork();
  // Large enough for many TLS records per read on a fast link (shard transfers move 1 MiB chunks).
  kj::Array<kj::byte> read_buffer_ = kj::heapArray<kj::byte>(256 * 1024);
};

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::create(const Identity& identity) {
  std::shared_ptr<TlsContext> context(new TlsContext(identity));
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (!ctx) return Error{"cannot create a TLS context: " + ssl_error_text()};
  context->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_num_tickets(ctx, 0);  // no resumption: every connection proves its key afresh
  const auto& der = identity.certificate_der();
  if (SSL_CTX_use_certificate_ASN1(ctx, static_cast<int>(der.size()), der.data()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, static_cast<EVP_PKEY*>(identity.evp_pkey())) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1)
    return Error{"cannot load the identity into TLS: " + ssl_error_text()};
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any_certificate);
  return context;
}

TlsContext::~TlsContext() { SSL_CTX_free(static_cast<SSL_CTX*>(ctx_)); }

kj::Promise<TlsPeer> TlsContext::connect(kj::Own<kj::AsyncIoStream> inner, std::string expected_peer_id) {
  return handshake(kj::mv(inner), true, kj::mv(expected_peer_id));
}

kj::Promise<TlsPeer> TlsContext::accept(kj::Own<kj::AsyncIoStream> inner) {
  return handshake(kj::mv(inner), false, {});
}

kj::Promise<TlsPeer> TlsContext::handshake(kj::Own<kj::AsyncIoStream> inner, bool client, std::string expected) {
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  if (ssl == nullptr) throw_rpc_error("cannot create a TLS connection: " + ssl_error_text());
  if (client) {
    SSL_set_connect_state(ssl);
  } else {
    SSL_set_accept_state(ssl);
  }
  auto stream = kj::heap<TlsStream>(kj::mv(inner), ssl);
  auto promise = stream->handshake();
  return promise.then([stream = kj::mv(stream), expected = kj::mv(expected)]() mutable -> TlsPeer {
    X509* cert = SSL_get0_peer_certificate(stream->ssl());
    if (cert == nullptr) throw_rpc_error("the peer presented no certificate");
    auto key = ed25519_key_of_certificate(cert);
    if (!key) throw_rpc_error(key.error().message);
    std::string id = peer_id_from_public_key(*key);
    if (!expected.empty() && id != expected)
      throw_rpc_error("peer id mismatch: expected " + expected + " but the peer presented " + id);
    return TlsPeer{kj::mv(stream), kj::mv(id)};
  });
}

}  // namespace omni::net
