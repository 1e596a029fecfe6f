// The one place where an operating-system error number (errno, or a std::error_code's value)
// becomes an ErrorCode. Everything that reports a failed system call builds its Error here, so a
// full disk reads ResourceExhausted and a refused connection Unavailable wherever it happens.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "base/result.h"

namespace omni {

// What a caller can do about `err` (an errno value). Unknown or unexpected numbers are Internal.
constexpr ErrorCode error_code_from_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENXIO:
    case ESRCH:
      return ErrorCode::NotFound;
    case EACCES:
    case EPERM:
    case EROFS:
      return ErrorCode::PermissionDenied;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EFBIG:
    case EAGAIN:  // EWOULDBLOCK on Linux: a resource is temporarily not available
    case ENOBUFS:
      return ErrorCode::ResourceExhausted;
    case ETIMEDOUT:
      return ErrorCode::DeadlineExceeded;
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
    case ENOTCONN:
    case EADDRNOTAVAIL:
      return ErrorCode::Unavailable;
    case EEXIST:
    case EADDRINUSE:
    case ENOTEMPTY:
      return ErrorCode::AlreadyExists;
    case EINVAL:
    case EISDIR:
    case ENAMETOOLONG:
    case ELOOP:
    case EBADF:
      return ErrorCode::InvalidArgument;
    case EIO:
    case EBADMSG:
    case EILSEQ:
      return ErrorCode::Corruption;
    case EINTR:
    case ECANCELED:
      return ErrorCode::Cancelled;
    default:
      return ErrorCode::Internal;
  }
}

// "<what>: <strerror(err)>" with the code error_code_from_errno(err). Read errno right after the
// failed call and pass it in: another call in between (close(), unlink()) may change it.
inline Error errno_error(int err, const std::string& what) {
  return Error{error_code_from_errno(err), what + ": " + std::strerror(err)};
}

}  // namespace omni
