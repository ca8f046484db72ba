#include "core/posix_shm_object.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace shmbroker {
namespace {

// 64 random bits: a name taken by chance is already unlikely, so a few
// draws end it.
constexpr int kRandomNameAttempts = 8;

absl::StatusOr<std::string> RandomHex() {
  uint64_t bits = 0;
  if (::getrandom(&bits, sizeof(bits), 0) != sizeof(bits)) {
    return ErrnoToStatus(errno, "getrandom");
  }
  return absl::StrFormat("%016x", bits);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MemoryObject>> PosixShmObject::Create(
    const MemorySpec& spec) {
  if (spec.shm_name.size() < 2 || spec.shm_name[0] != '/' ||
      spec.shm_name.find('/', 1) != std::string::npos) {
    return absl::InternalError(
        absl::StrCat("bad shm name \"", spec.shm_name, "\""));
  }
  // O_EXCL: never open an object someone else created under our name.
  std::string name = spec.shm_name;
  UniqueFd fd;
  for (int attempt = 0; attempt < kRandomNameAttempts; ++attempt) {
    if (spec.random_suffix) {
      absl::StatusOr<std::string> suffix = RandomHex();
      if (!suffix.ok()) return suffix.status();
      name = absl::StrCat(spec.shm_name, ".", *suffix);
    }
    fd.reset(
        ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.valid() || errno != EEXIST || !spec.random_suffix) break;
  }
  if (!fd.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("shm_open ", name));
  }
  // From here on the name exists: the object unlinks it if sizing fails.
  std::unique_ptr<PosixShmObject> object(
      new PosixShmObject(std::move(fd), spec.size, name));
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
  if (!keep_name()) ::shm_unlink(name_.c_str());
}

}  // namespace shmbroker
