#include "net/tls.h"

#include "net/errors.h"
#include "net/peer_id.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <climits>
#include <cstring>
#include <vector>
#include <kj/debug.h>

namespace omni::net {
namespace {

// Identity is checked after the handshake (see tls.h); here every chain is accepted.
int accept_any_certificate(int, X509_STORE_CTX*) { return 1; }

class TlsStream;
int bio_write(BIO* bio, const char* data, size_t size, size_t* written);
int bio_read(BIO* bio, char* out, size_t size, size_t* read);
long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

// OpenSSL reads and writes ciphertext through this BIO, which works directly on TlsStream's
// buffers: reads come from the bytes last read off the inner stream, writes append to the batch
// that the next flush sends. (Memory BIOs cost an extra copy each way, plus reallocations.)
BIO_METHOD* stream_bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "omni kj stream");
    KJ_ASSERT(m != nullptr, "out of memory for the TLS BIO method");
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

// The plaintext stream: OpenSSL takes ciphertext from `read_buffer_` and appends what it produces
// to `out_` (through the BIO above); this class moves bytes between those buffers and the inner
// stream. All on one event loop thread.
class TlsStream final : public kj::AsyncIoStream {
 public:
  TlsStream(kj::Own<kj::AsyncIoStream> inner, SSL* ssl) : inner_(kj::mv(inner)), ssl_(ssl) {
    BIO* bio = BIO_new(stream_bio_method());
    KJ_ASSERT(bio != nullptr, "out of memory for TLS buffers");
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);  // ssl_ owns the BIO now (one reference for both directions)
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
        if (eof) throw_rpc_error(ErrorCode::Unavailable, "the peer closed the connection during the TLS handshake");
        return handshake();
      });
    }
    // Send the alert (if any) so the peer learns why, then fail.
    // Not a TLS peer, or one we share no protocol version or cipher with: try another.
    Error why = openssl_error(ErrorCode::Unavailable, "TLS handshake failed");
    return flush().then([why]() -> kj::Promise<void> { throw_rpc_error(why); });
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    return read_loop(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0);
  }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    reserve_out(size);
    encrypt(static_cast<const kj::byte*>(buffer), size);
    return flush();
  }

  // All pieces become TLS records first, then one flush: one inner write instead of one per piece.
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    size_t total = 0;
    for (auto& piece : pieces) total += piece.size();
    reserve_out(total);
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

  // The BIO's side (called by OpenSSL from inside SSL_* calls on this thread).
  //
  // Reading the socket straight into OpenSSL's record buffer would save take_input's copy, but
  // needs OpenSSL's read-ahead (else two reads per record), and OpenSSL 3.0 then moves what is left
  // in that buffer to its start on every SSL_read: measured, more copying than it saves.
  size_t take_input(char* out, size_t size) {
    size_t n = std::min(size, in_end_ - in_begin_);
    memcpy(out, read_buffer_.begin() + in_begin_, n);
    in_begin_ += n;
    return n;
  }
  void add_output(const char* data, size_t size) {
    out_.insert(out_.end(), reinterpret_cast<const kj::byte*>(data), reinterpret_cast<const kj::byte*>(data) + size);
  }

 private:
  // Room for `plaintext` bytes as TLS records, so that the batch is not reallocated while OpenSSL
  // appends to it: each record of up to 16 KiB adds a 5-byte header, a content type byte and a
  // 16-byte tag.
  void reserve_out(size_t plaintext) {
    const size_t records = plaintext / 16384 + 2;
    out_.reserve(out_.size() + plaintext + records * 22 + 256);
  }

  // Turns plaintext into TLS records appended to the outgoing batch.
  void encrypt(const kj::byte* p, size_t size) {
    while (size > 0) {
      int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX / 2));
      ERR_clear_error();
      int r = SSL_write(ssl_, p, chunk);
      if (r <= 0) throw_rpc_error(openssl_error(ErrorCode::Unavailable, "TLS write failed"));
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
      if (err != SSL_ERROR_WANT_READ) throw_rpc_error(openssl_error(ErrorCode::Unavailable, "TLS read failed"));
      if (eof_) return done;  // the connection ended without close_notify: callers see a short read
      return flush().then([this] { return fill(); }).then([this, buffer, min_bytes, max_bytes, done](bool) {
        return read_loop(buffer, min_bytes, max_bytes, done);
      });
    }
    // TLS 1.3 may answer what it read (key updates); keep those bytes moving.
    if (!out_.empty()) {
      return flush().then([done] { return done; });
    }
    return done;
  }

  // Reads some ciphertext from the inner stream for OpenSSL; resolves to true at end of stream.
  // OpenSSL asks for more only after it has taken everything buffered, but keep any rest anyway.
  kj::Promise<bool> fill() {
    if (in_begin_ > 0) {
      memmove(read_buffer_.begin(), read_buffer_.begin() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    if (in_end_ == read_buffer_.size())  // OpenSSL wants more but took nothing: it cannot progress
      throw_rpc_error(ErrorCode::Unavailable, "TLS read stalled with a full buffer");
    return inner_->tryRead(read_buffer_.begin() + in_end_, 1, read_buffer_.size() - in_end_).then([this](size_t n) {
      if (n == 0) {
        eof_ = true;
        return true;
      }
      in_end_ += n;
      return false;
    });
  }

  // Sends everything OpenSSL has produced, after whatever was queued before (writes stay ordered).
  kj::Promise<void> flush() {
    if (!out_.empty()) {
      auto data = kj::heap<std::vector<kj::byte>>(std::move(out_));
      out_ = {};
      tail_ = tail_.addBranch()
                  .then([this, data = kj::mv(data)]() mutable {
                    auto promise = inner_->write(data->data(), data->size());
                    return promise.attach(kj::mv(data));
                  })
                  .fork();
    }
    return tail_.addBranch();
  }

  kj::Own<kj::AsyncIoStream> inner_;
  SSL* ssl_;
  bool eof_ = false;
  kj::ForkedPromise<void> tail_ = kj::Promise<void>(kj::READY_NOW).fork();
  std::vector<kj::byte> out_;  // TLS records not yet handed to the inner stream
  // Large enough for many TLS records per read on a fast link (shard transfers move 1 MiB chunks);
  // bytes [in_begin_, in_end_) are ciphertext OpenSSL has not taken yet.
  kj::Array<kj::byte> read_buffer_ = kj::heapArray<kj::byte>(256 * 1024);
  size_t in_begin_ = 0, in_end_ = 0;
};

int bio_write(BIO* bio, const char* data, size_t size, size_t* written) {
  BIO_clear_retry_flags(bio);
  static_cast<TlsStream*>(BIO_get_data(bio))->add_output(data, size);
  *written = size;
  return 1;
}

int bio_read(BIO* bio, char* out, size_t size, size_t* read) {
  BIO_clear_retry_flags(bio);
  size_t n = static_cast<TlsStream*>(BIO_get_data(bio))->take_input(out, size);
  if (n == 0) {
    BIO_set_retry_read(bio);  // as an empty memory BIO: "try again", the stream refills it
    *read = 0;
    return 0;
  }
  *read = n;
  return 1;
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  // OpenSSL flushes after each handshake flight; the bytes go out with the stream's next flush().
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::create(const Identity& identity) {
  std::shared_ptr<TlsContext> context(new TlsContext(identity));
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (!ctx) return openssl_error(ErrorCode::Internal, "cannot create a TLS context");
  context->ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_num_tickets(ctx, 0);  // no resumption: every connection proves its key afresh
  const auto& der = identity.certificate_der();
  if (SSL_CTX_use_certificate_ASN1(ctx, static_cast<int>(der.size()), der.data()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, static_cast<EVP_PKEY*>(identity.evp_pkey())) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1)
    return openssl_error(ErrorCode::Internal, "cannot load the identity into TLS");
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
  if (ssl == nullptr) throw_rpc_error(openssl_error(ErrorCode::ResourceExhausted, "cannot create a TLS connection"));
  if (client) {
    SSL_set_connect_state(ssl);
  } else {
    SSL_set_accept_state(ssl);
  }
  auto stream = kj::heap<TlsStream>(kj::mv(inner), ssl);
  auto promise = stream->handshake();
  return promise.then([stream = kj::mv(stream), expected = kj::mv(expected)]() mutable -> TlsPeer {
    X509* cert = SSL_get0_peer_certificate(stream->ssl());
    if (cert == nullptr) throw_rpc_error(ErrorCode::PermissionDenied, "the peer presented no certificate");
    auto key = ed25519_key_of_certificate(cert);
    if (!key) throw_rpc_error(key.error());
    std::string id = peer_id_from_public_key(*key);
    if (!expected.empty() && id != expected)
      throw_rpc_error(ErrorCode::PermissionDenied,
                      "peer id mismatch: expected " + expected + " but the peer presented " + id);
    return TlsPeer{kj::mv(stream), kj::mv(id)};
  });
}

}  // namespace omni::net
