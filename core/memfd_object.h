// MemfdObject: an anonymous memfd, sized and then sealed with
// F_SEAL_SHRINK | F_SEAL_GROW so no holder can truncate it (which would make
// every other holder die of SIGBUS), and F_SEAL_SEAL so no holder adds
// seals of its own. A sealable one (MemorySpec::sealable) leaves F_SEAL_SEAL
// for SealWrites, which adds it with F_SEAL_WRITE; until then a holder with
// a writable fd could add seals too, which only its own writers would
// notice (the owner decides who gets write access).
#ifndef SHMBROKER_CORE_MEMFD_OBJECT_H_
#define SHMBROKER_CORE_MEMFD_OBJECT_H_

#include <memory>
#include <string>

#include "core/memory_object.h"

namespace shmbroker {

class MemfdObject final : public MemoryObject {
 public:
  static absl::StatusOr<std::unique_ptr<MemoryObject>> Create(
      const MemorySpec& spec);
  // An existing memfd (AdoptMemoryObject).
  static std::unique_ptr<MemoryObject> Wrap(UniqueFd fd, uint64_t size) {
    return std::unique_ptr<MemoryObject>(new MemfdObject(std::move(fd), size));
  }

  Backing backing() const override { return Backing::kMemfd; }
  const std::string& shm_name() const override;
  absl::Status SealWrites() const override;

 private:
  using MemoryObject::MemoryObject;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_MEMFD_OBJECT_H_
