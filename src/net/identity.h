// Identity: a node's or client's Ed25519 key pair, its peer id, and the self-signed X.509
// certificate that presents the key in TLS.
//
// The private key lives in `<data dir>/identity.pem` (PKCS#8 PEM), created on first use with mode
// 0600 inside a directory created with mode 0700. Refused, each with a message naming the file and
// the fix, so that a key is never silently shared, exposed or waited on: a key file readable or
// writable by group or others, or owned by another user; a symbolic link or a file with several
// hard links (two nodes sharing one key, which the per-directory lock cannot see); a data
// directory every user may write to; a passphrase-protected key (never prompted for). The
// certificate is regenerated at every start (it carries nothing but the key), so only the key is
// persistent state.
//
// Identity is cheap to copy (the OpenSSL key is reference-counted) and immutable; it can be shared
// between threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace omni::net {

class Identity {
 public:
  // Loads `<dir>/identity.pem`, or creates it (and `dir`) when it does not exist. Errors:
  // PermissionDenied for the refusals above but the passphrase (InvalidArgument), Corruption for a
  // malformed key, InvalidArgument for a key that is not Ed25519, the I/O error otherwise.
  static Result<Identity> load_or_create(const std::string& dir);
  // A fresh key held only in memory (tests, throwaway clients).
  static Result<Identity> generate();
  // The default data directory: $HOME/.omni (or ./.omni without HOME).
  static std::string default_dir();

  const std::string& peer_id() const { return peer_id_; }
  const std::array<uint8_t, 32>& public_key() const { return public_key_; }
  // The self-signed certificate (DER) for TLS, and the key as an OpenSSL EVP_PKEY*.
  const std::vector<uint8_t>& certificate_der() const { return certificate_der_; }
  void* evp_pkey() const { return key_.get(); }

 private:
  static Result<Identity> from_key(std::shared_ptr<void> key);
  std::shared_ptr<void> key_;  // EVP_PKEY, freed with EVP_PKEY_free
  std::array<uint8_t, 32> public_key_{};
  std::string peer_id_;
  std::vector<uint8_t> certificate_der_;
};

// Exclusive use of a data directory's identity by one process (one node), so that two nodes never
// share a peer id by accident: an advisory lock (flock) on `<dir>/identity.lock`, which records
// the holder's pid, held until this object goes (or the process ends, however it ends). Two
// acquirers in one process conflict too. Clients need no lock: they may share a key with a node.
class IdentityLock {
 public:
  // Creates `dir` (mode 0700) when missing. Errors: AlreadyExists when another process (or another
  // lock in this one) holds it (the message names the directory, the holder's pid and --data-dir);
  // PermissionDenied or Internal when the lock file cannot be opened.
  static Result<IdentityLock> acquire(const std::string& dir);
  IdentityLock(IdentityLock&& other) noexcept;
  IdentityLock& operator=(IdentityLock&& other) noexcept;
  IdentityLock(const IdentityLock&) = delete;
  IdentityLock& operator=(const IdentityLock&) = delete;
  ~IdentityLock();

 private:
  explicit IdentityLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The raw Ed25519 public key of a DER certificate, or an Error when it is not one (tests, TLS).
Result<std::array<uint8_t, 32>> ed25519_key_of_certificate(const void* x509);

}  // namespace omni::net
