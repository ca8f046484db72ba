// Registry: memory left with a service manager across a restart.
//
// A memfd lives only as long as some process holds it. A buffer only the
// daemon holds (under a detached lease whose producer exited) has nobody to
// present it after a restart, so a daemon stopping for one hands its memfd
// memory to the service manager (systemd's fd store), and the next daemon
// takes it back right after Restore, before any client connects. The books
// decide what the memory is: an fd is adopted only if it is the very object
// they recorded (device, inode, size), as for a client's presentation.
#include <fcntl.h>

#include <cerrno>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "core/registry.h"

namespace shmbroker {

std::vector<KeptMemory> Registry::MemoryToKeep() const {
  std::vector<KeptMemory> kept;
  absl::flat_hash_set<uint64_t> arenas;
  Locked lock(this);
  for (const auto& [handle, record] : buffers_) {
    std::shared_ptr<const MemoryObject> memory = MemoryLocked(record);
    if (memory == nullptr || memory->backing() != Backing::kMemfd) {
      continue;  // being created or awaiting memory; POSIX: kept by name
    }
    if (record.kind == BufferKind::kPooled) {
      if (!arenas.insert(record.arena_id).second) continue;
      kept.push_back({KeptMemory::Kind::kArena, record.arena_id, memory});
    } else {
      kept.push_back({KeptMemory::Kind::kBuffer, handle, memory});
    }
  }
  return kept;
}

absl::StatusOr<KeptAdoption> Registry::AdoptKept(KeptMemory::Kind kind,
                                                 uint64_t id, UniqueFd fd) {
  const bool arena = kind == KeptMemory::Kind::kArena;
  const std::string what = arena ? absl::StrFormat("arena %d", id)
                                 : absl::StrFormat("buffer %d", id);
  Deferred deferred(this);  // wakes waiters for the buffers, unlocked
  Locked lock(this);
  std::vector<std::pair<Handle, BufferRecord*>> awaiting;
  for (auto& [handle, record] : buffers_) {
    if (record.restored() == nullptr || !record.restored()->awaiting) continue;
    const bool pooled = record.kind == BufferKind::kPooled;
    if (arena ? pooled && record.arena_id == id : !pooled && handle == id) {
      awaiting.emplace_back(handle, &record);
    }
  }
  if (awaiting.empty()) {
    return absl::NotFoundError(absl::StrFormat(
        "no restored buffer awaits the memory of %s (not in the books, or "
        "live already)",
        what));
  }
  KeptAdoption adopted;
  for (const auto& [handle, record] : awaiting) {
    // Each adoption takes an fd; the buffers of one arena share the first
    // one's memory, and the others only check theirs is that object.
    UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!copy.valid()) return ErrnoToStatus(errno, "dup");
    absl::Status status =
        AdoptLocked(handle, *record, std::move(copy), deferred);
    if (!status.ok()) {
      // A wrong arena is wrong for every buffer in it: stop at the first.
      return absl::Status(
          status.code(),
          absl::StrFormat("the kept memory of %s: %s", what, status.message()));
    }
    ++adopted.buffers;
    adopted.bytes += record->charged_bytes;
  }
  return adopted;
}

}  // namespace shmbroker
