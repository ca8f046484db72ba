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
  if (::fcntl(fd.get(), F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return ErrnoToStatus(errno, "seal memfd");
  }
  return std::unique_ptr<MemoryObject>(
      new MemfdObject(std::move(fd), spec.size));
}

}  // namespace shmbroker
