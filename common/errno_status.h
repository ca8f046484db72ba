// ErrnoToStatus: a failed system call as an absl::Status naming what failed
// and the errno text. Header-only; shared by core, server and client.
#ifndef SHMBROKER_COMMON_ERRNO_STATUS_H_
#define SHMBROKER_COMMON_ERRNO_STATUS_H_

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace shmbroker {

// RESOURCE_EXHAUSTED for ENOMEM/ENOSPC/EMFILE/ENFILE, ALREADY_EXISTS for
// EEXIST, PERMISSION_DENIED for EACCES/EPERM, INTERNAL otherwise.
inline absl::Status ErrnoToStatus(int err, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace shmbroker

#endif  // SHMBROKER_COMMON_ERRNO_STATUS_H_
