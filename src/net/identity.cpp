#include "net/identity.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/system_error.h"
#include "net/errors.h"
#include "net/peer_id.h"

namespace omni::net {
namespace {

std::shared_ptr<void> own_key(EVP_PKEY* key) {
  return std::shared_ptr<void>(key, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
}

Result<std::vector<uint8_t>> self_signed_certificate(EVP_PKEY* key, const std::string& common_name) {
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  if (!cert) return openssl_error(ErrorCode::ResourceExhausted, "cannot allocate a certificate");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  // Validity is not what authenticates a peer (its key is), so the window is simply wide.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 86400);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_set_pubkey(cert.get(), key) != 1)
    return openssl_error(ErrorCode::Internal, "cannot set the certificate key");
  // Ed25519 signs the message itself: no separate digest.
  if (X509_sign(cert.get(), key, nullptr) <= 0)
    return openssl_error(ErrorCode::Internal, "cannot sign the certificate");
  int len = i2d_X509(cert.get(), nullptr);
  if (len <= 0) return openssl_error(ErrorCode::Internal, "cannot encode the certificate");
  std::vector<uint8_t> der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  i2d_X509(cert.get(), &p);
  return der;
}

}  // namespace

Result<std::array<uint8_t, 32>> ed25519_key_of_certificate(const void* x509) {
  EVP_PKEY* key = X509_get0_pubkey(static_cast<const X509*>(x509));
  if (!key || EVP_PKEY_id(key) != EVP_PKEY_ED25519)
    return Error{ErrorCode::PermissionDenied, "the peer's certificate key is not Ed25519"};
  std::array<uint8_t, 32> raw{};
  size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, raw.data(), &len) != 1 || len != raw.size())
    return Error{ErrorCode::PermissionDenied, "cannot read the peer's Ed25519 public key"};
  return raw;
}

Result<Identity> Identity::from_key(std::shared_ptr<void> key) {
  Identity id;
  auto* pkey = static_cast<EVP_PKEY*>(key.get());
  if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519) return Error{ErrorCode::InvalidArgument, "the key is not an Ed25519 key"};
  size_t len = id.public_key_.size();
  if (EVP_PKEY_get_raw_public_key(pkey, id.public_key_.data(), &len) != 1 || len != 32)
    return openssl_error(ErrorCode::InvalidArgument, "cannot read the Ed25519 public key");
  id.peer_id_ = peer_id_from_public_key(id.public_key_);
  auto cert = self_signed_certificate(pkey, id.peer_id_);
  if (!cert) return cert.error();
  id.certificate_der_ = std::move(*cert);
  id.key_ = std::move(key);
  return id;
}

Result<Identity> Identity::generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (!key) return openssl_error(ErrorCode::Internal, "cannot generate an Ed25519 key");
  return from_key(own_key(key));
}

std::string Identity::default_dir() {
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.omni";
}

Result<Identity> Identity::load_or_create(const std::string& dir) {
  const std::string path = dir + "/identity.pem";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return errno_error(errno, path);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return errno_error(errno, "cannot create the data directory " + dir);
    auto fresh = generate();
    if (!fresh) return fresh.error();
    // O_EXCL: two processes starting at once must not both write a key; the loser reads the winner's.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) return load_or_create(dir);
      return errno_error(errno, "cannot create " + path);
    }
    FILE* f = ::fdopen(fd, "w");
    if (!f) {
      const int err = errno;
      ::close(fd);
      return errno_error(err, "cannot write " + path);
    }
    const bool written = PEM_write_PrivateKey(f, static_cast<EVP_PKEY*>(fresh->evp_pkey()), nullptr, nullptr, 0,
                                              nullptr, nullptr) == 1;
    const bool synced = std::fflush(f) == 0 && ::fsync(fd) == 0;
    std::fclose(f);
    if (!written || !synced) {
      ::unlink(path.c_str());
      return openssl_error(ErrorCode::Internal, "cannot write " + path);
    }
    return fresh;
  }
  if (!S_ISREG(st.st_mode)) return Error{ErrorCode::InvalidArgument, path + " is not a regular file"};
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error{ErrorCode::PermissionDenied, path + " has permissions " + mode +
                                                  ", which let other users read or change this identity key; " +
                                                  "refusing to use it (fix with: chmod 600 " + path + ")"};
  }
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return errno_error(errno, "cannot read " + path);
  EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!key) return openssl_error(ErrorCode::Corruption, path + " is not a PEM private key");
  auto id = from_key(own_key(key));
  if (!id) return id.error().with_context(path);
  return id;
}

Result<IdentityLock> IdentityLock::acquire(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return errno_error(errno, "cannot create the data directory " + dir);
  const std::string path = dir + "/identity.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, "cannot open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    if (error != EWOULDBLOCK) return errno_error(error, "cannot lock " + path);
    std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Error{ErrorCode::AlreadyExists,
                 "the identity in " + dir + " is in use by another omni node" + (pid.empty() ? "" : " (pid " + pid + ")") +
                     "; nodes on one machine need their own identity: give each its own --data-dir"};
  }
  // The pid only serves the message another process shows (the lock is the flock): a failed write
  // just leaves it out.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  return IdentityLock(fd);
}

IdentityLock::IdentityLock(IdentityLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

IdentityLock& IdentityLock::operator=(IdentityLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

IdentityLock::~IdentityLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

}  // namespace omni::net
