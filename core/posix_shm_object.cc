#include "core/posix_shm_object.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace shmbroker {

absl::StatusOr<std::unique_ptr<MemoryObject>> PosixShmObject::Create(
    const MemorySpec& spec) {
  if (spec.shm_name.size() < 2 || spec.shm_name[0] != '/' ||
      spec.shm_name.find('/', 1) != std::string::npos) {
    return absl::InternalError(
        absl::StrCat("bad shm name \"", spec.shm_name, "\""));
  }
  UniqueFd fd(::shm_open(spec.shm_name.c_str(),
                         O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("shm_open ", spec.shm_name));
  }
  // From here on the name exists: the object unlinks it if sizing fails.
  std::unique_ptr<PosixShmObject> object(
      new PosixShmObject(std::move(fd), spec.size, spec.shm_name));
  if (::ftruncate(object->fd(), static_cast<off_t>(spec.size)) != 0) {
    return ErrnoToStatus(errno, "ftruncate");
  }
  if (::geteuid() == 0 && spec.owner_uid != 0 &&
      ::fchown(object->fd(), spec.owner_uid, spec.owner_gid) != 0) {
    return ErrnoToStatus(errno, "fchown");
  }
  return std::unique_ptr<MemoryObject>(std::move(object));
}

PosixShmObject::~PosixShmObject() {
  // ENOENT is fine: the owner may have unlinked it already.
  ::shm_unlink(name_.c_str());
}

}  // namespace shmbroker
