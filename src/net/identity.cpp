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

namespace {

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// A data directory anyone may write to lets anyone plant or swap the key (even with the sticky
// bit, another user can create identity.pem first).
Result<void> check_data_dir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return errno_error(errno, "cannot read the data directory " + dir);
  if (!S_ISDIR(st.st_mode)) return Error{ErrorCode::InvalidArgument, "the data directory " + dir + " is not a directory"};
  if (st.st_mode & S_IWOTH)
    return Error{ErrorCode::PermissionDenied,
                 "the data directory " + dir + " has permissions " + mode_text(st.st_mode) +
                     ": every user may write to it, so anyone could plant or replace its identity key; refusing "
                     "to use it (fix with: chmod 700 " + dir + ", or give a private --data-dir)"};
  return {};
}

// The key file as opened (never through a symbolic link), checked before any byte is read.
Result<int> open_key_file(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_error(errno, path);
  if (S_ISLNK(st.st_mode)) {
    char target[4096] = {};
    const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    return Error{ErrorCode::PermissionDenied,
                 path + " is a symbolic link" + (n > 0 ? " to " + std::string(target, static_cast<size_t>(n)) : "") +
                     ": a key shared by two nodes gives them one peer id, which the data directory's lock cannot "
                     "see; refusing to use it (give each node its own key: remove the link and omni creates a new "
                     "key, or point --data-dir at the directory that holds the key)"};
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "cannot read " + path);
  auto refuse = [fd](Error e) -> Result<int> {
    ::close(fd);
    return e;
  };
  if (::fstat(fd, &st) != 0) return refuse(errno_error(errno, "cannot read " + path));
  if (!S_ISREG(st.st_mode)) return refuse(Error{ErrorCode::InvalidArgument, path + " is not a regular file"});
  if (st.st_nlink > 1)
    return refuse(Error{ErrorCode::PermissionDenied,
                        path + " has " + std::to_string(st.st_nlink) +
                            " hard links: a key shared by two nodes gives them one peer id, which the data "
                            "directory's lock cannot see; refusing to use it (give each node its own key: remove "
                            "the other links, or remove this one and omni creates a new key)"});
  if (st.st_mode & 077)
    return refuse(Error{ErrorCode::PermissionDenied,
                        path + " has permissions " + mode_text(st.st_mode) +
                            ", which let other users read or change this identity key; refusing to use it (fix "
                            "with: chmod 600 " + path + ")"});
  if (st.st_uid != ::geteuid())
    return refuse(Error{ErrorCode::PermissionDenied,
                        path + " belongs to user " + std::to_string(st.st_uid) + ", not to this user (" +
                            std::to_string(::geteuid()) + "); refusing to use another user's identity key (give "
                            "a --data-dir of your own)"});
  return fd;
}

// OpenSSL's passphrase callback: never prompts (a node runs unattended); records that it was asked.
int no_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

}  // namespace

Result<Identity> Identity::load_or_create(const std::string& dir) {
  const std::string path = dir + "/identity.pem";
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return errno_error(errno, path);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return errno_error(errno, "cannot create the data directory " + dir);
    if (auto checked = check_data_dir(dir); !checked) return checked.error();
    auto fresh = generate();
    if (!fresh) return fresh.error();
    // O_EXCL: two processes starting at once must not both write a key; the loser reads the winner's.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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
  if (auto checked = check_data_dir(dir); !checked) return checked.error();
  auto fd = open_key_file(path);
  if (!fd) return fd.error();
  FILE* f = ::fdopen(*fd, "r");
  if (!f) {
    const int err = errno;
    ::close(*fd);
    return errno_error(err, "cannot read " + path);
  }
  bool asked = false;
  EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, no_passphrase, &asked);
  std::fclose(f);
  if (!key && asked) {
    ERR_clear_error();
    return Error{ErrorCode::InvalidArgument,
                 path + " is protected by a passphrase, which omni never asks for (nodes run unattended); "
                        "refusing to use it (remove the passphrase with: openssl pkey -in " + path + " -out " + path +
                        ".plain && chmod 600 " + path + ".plain && mv " + path + ".plain " + path + ")"};
  }
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
