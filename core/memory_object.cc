#include "core/memory_object.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

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

absl::StatusOr<MemoryIdentity> IdentityOf(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, "fstat");
  return MemoryIdentity{static_cast<uint64_t>(st.st_dev),
                        static_cast<uint64_t>(st.st_ino)};
}

MemoryObject::MemoryObject(UniqueFd fd, uint64_t size)
    : fd_(std::move(fd)), size_(size) {
  // Once, here: the books record it with every buffer (core/books.h).
  identity_ = IdentityOf(fd_.get()).value_or(MemoryIdentity{});
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

absl::StatusOr<std::unique_ptr<MemoryObject>> AdoptMemoryObject(
    Backing backing, UniqueFd fd, const std::string& shm_name,
    const MemoryIdentity& expected, uint64_t size) {
  if (backing == Backing::kPosix) {
    // O_NOFOLLOW is implied for shm names (no '/' after the first); never
    // O_CREAT: a name that is gone stays gone.
    fd.reset(::shm_open(shm_name.c_str(), O_RDWR | O_CLOEXEC, 0));
    if (!fd.valid()) {
      if (errno == ENOENT) {
        return absl::NotFoundError(
            absl::StrCat("shm object ", shm_name, " is gone"));
      }
      return ErrnoToStatus(errno, absl::StrCat("shm_open ", shm_name));
    }
  }
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
    return absl::FailedPreconditionError("not an open file descriptor");
  }
  // Checked before anything else is done with the fd: only the very object
  // the books recorded is ever reopened or mapped.
  if (MemoryIdentity{static_cast<uint64_t>(st.st_dev),
                     static_cast<uint64_t>(st.st_ino)} != expected ||
      !S_ISREG(st.st_mode) ||
      (size != 0 && static_cast<uint64_t>(st.st_size) != size)) {
    return absl::FailedPreconditionError(
        "it is not the memory object the books recorded (device, inode or "
        "size differ)");
  }
  if (backing == Backing::kPosix) {
    return PosixShmObject::Wrap(std::move(fd), st.st_size, shm_name);
  }
  // A presented fd may be read-only: the daemon needs its own read-write
  // description to grant it writable again.
  const std::string path = absl::StrCat("/proc/self/fd/", fd.get());
  UniqueFd own(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!own.valid()) return ErrnoToStatus(errno, "reopen read-write");
  return MemfdObject::Wrap(std::move(own), st.st_size);
}

}  // namespace shmbroker
