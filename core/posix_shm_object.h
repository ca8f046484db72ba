// PosixShmObject: a named POSIX shm object (shm_open), created exclusively
// with mode 0600 and, when the daemon is root, owned by the allocating uid so
// that name-based clients of that uid can open it. The name is daemon-chosen,
// with an unpredictable suffix when the spec asks for one.
// It cannot be sealed. Destruction unlinks the name.
#ifndef SHMBROKER_CORE_POSIX_SHM_OBJECT_H_
#define SHMBROKER_CORE_POSIX_SHM_OBJECT_H_

#include <memory>
#include <string>

#include "core/memory_object.h"

namespace shmbroker {

class PosixShmObject final : public MemoryObject {
 public:
  static absl::StatusOr<std::unique_ptr<MemoryObject>> Create(
      const MemorySpec& spec);
  // An existing object (AdoptMemoryObject); unlinks `name` when it goes.
  static std::unique_ptr<MemoryObject> Wrap(UniqueFd fd, uint64_t size,
                                            std::string name) {
    return std::unique_ptr<MemoryObject>(
        new PosixShmObject(std::move(fd), size, std::move(name)));
  }
  ~PosixShmObject() override;

  Backing backing() const override { return Backing::kPosix; }
  const std::string& shm_name() const override { return name_; }

 private:
  PosixShmObject(UniqueFd fd, uint64_t size, std::string name)
      : MemoryObject(std::move(fd), size), name_(std::move(name)) {}

  std::string name_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_POSIX_SHM_OBJECT_H_
