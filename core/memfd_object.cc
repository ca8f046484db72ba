#include "core/memfd_object.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace shmbroker {

const std::string& MemfdObject::shm_name() const {
  static const std::string kEmpty;
  return kEmpty;
}

absl::StatusOr<std::unique_ptr<MemoryObject>> MemfdObject::Create(
    const MemorySpec& spec) {
  UniqueFd fd(
      ::memfd_create(spec.label.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return ErrnoToStatus(errno, "memfd_create");
  // Only the daemon re-opens the inode (for read-only grants); 0600 stops a
  // read-only holder of another uid from re-opening it read-write through
  // /proc/<pid>/fd.
  if (::fchmod(fd.get(), 0600) != 0) return ErrnoToStatus(errno, "fchmod");
  if (::ftruncate(fd.get(), static_cast<off_t>(spec.size)) != 0) {
    return ErrnoToStatus(errno, "ftruncate");
  }
  const int seals =
      F_SEAL_SHRINK | F_SEAL_GROW | (spec.sealable ? 0 : F_SEAL_SEAL);
  if (::fcntl(fd.get(), F_ADD_SEALS, seals) != 0) {
    return ErrnoToStatus(errno, "seal memfd");
  }
  return std::unique_ptr<MemoryObject>(
      new MemfdObject(std::move(fd), spec.size));
}

absl::Status MemfdObject::SealWrites() const {
  if (::fcntl(fd(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) == 0) {
    return absl::OkStatus();
  }
  if (errno == EBUSY) {
    return absl::FailedPreconditionError(
        "a process still maps it writable: every writer must unmap it "
        "before it can be sealed");
  }
  if (errno == EPERM) {
    return absl::FailedPreconditionError(
        "its seals are locked (a holder with write access added seals of "
        "its own)");
  }
  return ErrnoToStatus(errno, "F_SEAL_WRITE");
}

}  // namespace shmbroker
