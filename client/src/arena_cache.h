// ArenaCache: this connection's mappings of pooled arenas (docs/api.md,
// "Pooled buffers"). The daemon sends an arena's fd to a connection once;
// the client maps the whole arena once and every pooled Buffer in it points
// into that mapping, which lives while the cache or any such Buffer holds
// it. Trim() drops arenas no Buffer uses and tells the daemon (one
// kForgetArena frame each) so that it sends the fd again when needed.
// Internal to the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_ARENA_CACHE_H_
#define SHMBROKER_CLIENT_SRC_ARENA_CACHE_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"
#include "shmbroker/mapping.h"

namespace shmbroker::client {

// One arena's fd and its mapping in this process.
class ArenaMapping {
 public:
  ArenaMapping(uint64_t id, UniqueFd fd, Mapping mapping)
      : id_(id), fd_(std::move(fd)), mapping_(std::move(mapping)) {}
  uint64_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  const Mapping& mapping() const { return mapping_; }

 private:
  const uint64_t id_;
  const UniqueFd fd_;
  const Mapping mapping_;
};

class ArenaCache {
 public:
  // Held shared from sending a request that may grant a pooled buffer until
  // its arena is found or adopted, and exclusively by Trim: so the daemon is
  // never told to forget an arena while a grant in it is on its way.
  absl::Mutex& grants_mu() ABSL_LOCK_RETURNED(grants_mu_) { return grants_mu_; }

  // The cached mapping of `arena_id` (writable or read-only), or null.
  std::shared_ptr<const ArenaMapping> Find(uint64_t arena_id, bool writable);
  // Maps `size` bytes of `fd` and caches them. If the arena is cached
  // already (two grants raced), keeps that one and closes `fd`.
  absl::StatusOr<std::shared_ptr<const ArenaMapping>> Adopt(uint64_t arena_id,
                                                            bool writable,
                                                            UniqueFd fd,
                                                            uint64_t size);
  // Drops every arena no Buffer uses, after `forget(arena_id, writable)`
  // accepts telling the daemon; returns how many were dropped.
  size_t Trim(const std::function<bool(uint64_t, bool)>& forget);

 private:
  static uint64_t Key(uint64_t arena_id, bool writable) {
    return arena_id * 2 + (writable ? 1 : 0);
  }

  absl::Mutex grants_mu_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const ArenaMapping>> arenas_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_ARENA_CACHE_H_
