#include "core/memory_object.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/memfd_object.h"
#include "core/posix_shm_object.h"

namespace shmbroker {

const char* BackingName(Backing backing) {
  switch (backing) {
    case Backing::kMemfd:
      return "memfd";
    case Backing::kPosix:
      return "posix";
  }
  return "unknown";
}

absl::Status MemoryObject::SealWrites() const {
  return absl::UnimplementedError(absl::StrCat(
      BackingName(backing()), " memory cannot be sealed by the kernel"));
}

absl::StatusOr<UniqueFd> MemoryObject::OpenReadOnly() const {
  // Re-opening through /proc gives a new, read-only open file description;
  // dup() would share the read-write one.
  std::string path = absl::StrCat("/proc/self/fd/", fd());
  UniqueFd ro(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ro.valid()) return ErrnoToStatus(errno, "reopen read-only");
  return ro;
}

absl::StatusOr<std::unique_ptr<MemoryObject>> CreateMemoryObject(
    const MemorySpec& spec) {
  switch (spec.backing) {
    case Backing::kMemfd:
      return MemfdObject::Create(spec);
    case Backing::kPosix:
      return PosixShmObject::Create(spec);
  }
  return absl::InvalidArgumentError("unknown backing");
}

}  // namespace shmbroker
