// MemfdObject: an anonymous memfd, sized and then sealed with
// F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL so no holder can truncate it
// (which would make every other holder die of SIGBUS) or add seals of its own.
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

  Backing backing() const override { return Backing::kMemfd; }
  const std::string& shm_name() const override;

 private:
  using MemoryObject::MemoryObject;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_MEMFD_OBJECT_H_
