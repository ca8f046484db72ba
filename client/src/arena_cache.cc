#include "client/src/arena_cache.h"

#include <utility>
#include <vector>

namespace shmbroker::client {

std::shared_ptr<const ArenaMapping> ArenaCache::Find(uint64_t arena_id,
                                                     bool writable) {
  absl::MutexLock lock(&mu_);
  auto it = arenas_.find(Key(arena_id, writable));
  return it == arenas_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<const ArenaMapping>> ArenaCache::Adopt(
    uint64_t arena_id, bool writable, UniqueFd fd, uint64_t size) {
  if (std::shared_ptr<const ArenaMapping> cached = Find(arena_id, writable)) {
    return cached;
  }
  // Map without the lock: a 64 MiB mmap is cheap, but it is a syscall.
  absl::StatusOr<Mapping> mapping = Mapping::Map(fd.get(), 0, size, writable);
  if (!mapping.ok()) return mapping.status();
  auto arena = std::make_shared<const ArenaMapping>(arena_id, std::move(fd),
                                                    std::move(*mapping));
  absl::MutexLock lock(&mu_);
  return arenas_.emplace(Key(arena_id, writable), arena).first->second;
}

size_t ArenaCache::Trim(const std::function<bool(uint64_t, bool)>& forget) {
  absl::MutexLock grants(&grants_mu_);
  std::vector<std::shared_ptr<const ArenaMapping>> dropped;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = arenas_.begin(); it != arenas_.end();) {
      const bool writable = it->first % 2 == 1;
      // use_count is exact here: Buffers copy it only under grants_mu_
      // (shared), which Trim holds exclusively.
      if (it->second.use_count() == 1 && forget(it->second->id(), writable)) {
        dropped.push_back(std::move(it->second));
        arenas_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  return dropped.size();  // unmapped and closed as `dropped` goes
}

}  // namespace shmbroker::client
