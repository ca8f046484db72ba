// MemoryObject: one OS shared-memory object (a segment) created by the
// daemon. It owns its fd; destroying it closes the fd and, for named
// backings, unlinks the name. Pages stay alive while any client maps them,
// but the daemon no longer counts them. Immutable after creation, so const
// methods are thread-safe.
#ifndef SHMBROKER_CORE_MEMORY_OBJECT_H_
#define SHMBROKER_CORE_MEMORY_OBJECT_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/errno_status.h"
#include "common/unique_fd.h"

namespace shmbroker {

enum class Backing : uint8_t { kMemfd, kPosix };

// Which OS object a segment is (st_dev, st_ino), so that an fd presented
// after a daemon restart can be checked to be that very one.
struct MemoryIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  friend bool operator==(const MemoryIdentity&,
                         const MemoryIdentity&) = default;
};

// The identity of the object `fd` refers to, or the errno of fstat.
absl::StatusOr<MemoryIdentity> IdentityOf(int fd);

const char* BackingName(Backing backing);

struct MemorySpec {
  Backing backing = Backing::kMemfd;
  uint64_t size = 0;
  // For kPosix: the daemon-chosen shm_open name ("/prefix.pid.handle").
  std::string shm_name;
  // For kPosix: append "." and 16 random hex digits to shm_name, so that
  // nobody can take the name first (shm names are host-wide, and anyone may
  // create one); drawn again when taken, a few times.
  bool random_suffix = false;
  // For kPosix when the daemon runs as root: the object's owner.
  uid_t owner_uid = 0;
  gid_t owner_gid = 0;
  // Label shown in /proc/PID/fd for memfds (debugging aid only).
  std::string label = "shmbroker";
  // For kMemfd: leave the seals open so that SealWrites can add
  // F_SEAL_WRITE later (a dedicated buffer's seal). Otherwise F_SEAL_SEAL
  // locks them at creation.
  bool sealable = false;
};

class MemoryObject {
 public:
  virtual ~MemoryObject() = default;
  MemoryObject(const MemoryObject&) = delete;
  MemoryObject& operator=(const MemoryObject&) = delete;

  int fd() const { return fd_.get(); }
  uint64_t size() const { return size_; }
  const MemoryIdentity& identity() const { return identity_; }
  // Leave a named object's name in place when this goes (a daemon stopping
  // for a restart: its successor adopts or removes the name).
  void KeepName() const { keep_name_.store(true); }
  virtual Backing backing() const = 0;
  // The shm_open name for named backings; empty otherwise.
  virtual const std::string& shm_name() const = 0;

  // A new O_RDONLY file description of the same object (through
  // /proc/self/fd), for read-only holders: mapping it writable fails.
  absl::StatusOr<UniqueFd> OpenReadOnly() const;

  // Makes the memory immutable for everyone, the daemon and root included:
  // F_SEAL_WRITE (and F_SEAL_SEAL) on a sealable memfd. FAILED_PRECONDITION
  // while any process maps it writable (EBUSY), or when its seals are
  // locked; UNIMPLEMENTED for objects the kernel cannot seal.
  virtual absl::Status SealWrites() const;

 protected:
  MemoryObject(UniqueFd fd, uint64_t size);
  bool keep_name() const { return keep_name_.load(); }

 private:
  UniqueFd fd_;
  uint64_t size_;
  MemoryIdentity identity_;
  mutable std::atomic<bool> keep_name_{false};
};

// Creates, sizes and (for memfd) seals a segment. Errors carry the errno
// text: RESOURCE_EXHAUSTED for ENOMEM/ENOSPC/EMFILE/ENFILE, ALREADY_EXISTS for
// a taken shm name, INTERNAL otherwise.
absl::StatusOr<std::unique_ptr<MemoryObject>> CreateMemoryObject(
    const MemorySpec& spec);

// Takes over a segment a previous daemon made (core/books.h): `fd` is a
// memfd a client presented, or (kPosix) the object named `shm_name`, which
// is opened here. FAILED_PRECONDITION unless it is the object `expected`
// names, of `size` bytes; NOT_FOUND for a name that is gone. The daemon
// gets a read-write description of its own (through /proc/self/fd), whatever
// mode the presented fd had.
absl::StatusOr<std::unique_ptr<MemoryObject>> AdoptMemoryObject(
    Backing backing, UniqueFd fd, const std::string& shm_name,
    const MemoryIdentity& expected, uint64_t size);

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_MEMORY_OBJECT_H_
