// The value types the Registry (core/registry.h) takes and returns: its
// options, buffer descriptions and references, a grant, what closing or
// expiring did, and its figures. Plain values; copy freely.
#ifndef SHMBROKER_CORE_REGISTRY_TYPES_H_
#define SHMBROKER_CORE_REGISTRY_TYPES_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "core/access.h"
#include "core/identity.h"
#include "core/ids.h"
#include "core/lease.h"
#include "core/memory_object.h"
#include "core/tenant_quotas.h"

namespace shmbroker {

// Watch (core/watch_hub.h).
struct WatchOptions {
  // Changes kept, so that a watch may start from a recent revision.
  uint32_t history = 4096;
  // Events queued for one watcher, unsent, before it is lost.
  uint32_t queue_events = 1024;
  // Watch streams open at once per client connection (or per gRPC
  // connection, for a caller without one).
  uint32_t max_watchers_per_connection = 16;
};

struct RegistryOptions {
  uint64_t capacity_bytes = uint64_t{1} << 30;
  uint64_t max_buffers = 100000;
  // Per owner uid (core/tenant_quotas.h): bytes charged for its live
  // buffers (as in BufferInfo::charged_bytes) and their number. 0, or as
  // much as capacity_bytes / max_buffers: no per-uid limit (the daemon
  // always sets both; docs/operations.md).
  uint64_t max_bytes_per_uid = 0;
  uint64_t max_buffers_per_uid = 0;
  // Uids with their own quotas instead (--tenant_limits), as SetOwnQuotas.
  OwnQuotas own_quotas;
  uint32_t max_connections_per_uid = 256;
  // Calls one client connection may have waiting at once: Attach calls
  // waiting for a buffer, and Allocate calls waiting for room.
  uint32_t max_waiters_per_connection = 64;
  LeaseOptions leases;
  // A new dedicated segment whose fd number reaches this is refused
  // (Limit::kFdReserve): fds are handed out lowest first, so the fds from
  // here up stay free for client connections and the daemon's own use. 0:
  // no check.
  uint64_t max_segment_fd = 0;
  WatchOptions watch;
  // POSIX shm names are "<shm_prefix>.<handle>.<16 random hex digits>";
  // must start with '/'.
  std::string shm_prefix = "/shmbroker";
  // Entities a rewrite of the books hands to the sink per hold of the lock
  // (core/registry_books.cc): about 0.1 ms at 256.
  size_t books_rewrite_step = 256;
};

// Names a buffer by handle (when non-zero) or by name.
struct BufferRef {
  Handle handle = 0;
  std::string name;
  static BufferRef ByHandle(Handle h) { return {h, {}}; }
  static BufferRef ByName(std::string n) { return {0, std::move(n)}; }
  std::string ToString() const;
};

enum class BufferKind : uint8_t { kDedicated, kPooled };

struct AllocateSpec {
  uint64_t size = 0;
  std::string name;  // empty: unnamed
  Backing backing = Backing::kMemfd;
  std::vector<ShareRule> share;
  LeaseId lease = 0;  // 0: the connection's default lease
  // Unset: pooled when pooling is on and the buffer is an owner-only memfd
  // of up to the allocator's threshold, falling back to dedicated when no
  // arena fits in the capacity.
  std::optional<BufferKind> kind;
  // Pooled: zero recycled memory (new memory is zero anyway).
  bool zeroed = true;
};

struct BufferInfo {
  Handle handle = 0;
  std::string name;
  uint64_t size = 0;
  // Dedicated: size rounded up to whole pages. Pooled: its slot or run.
  uint64_t charged_bytes = 0;
  Backing backing = Backing::kMemfd;
  BufferKind kind = BufferKind::kDedicated;
  uint64_t arena_id = 0;  // pooled only
  uint64_t offset = 0;    // pooled only: where it starts in the arena
  Identity owner;
  std::vector<ShareRule> share;
  absl::Time created;
  uint32_t holders = 0;
  std::string shm_name;
  // Immutable from now on (Registry::Seal): later grants are read-only.
  bool sealed = false;
};

// A hold just taken, with what the caller needs to pass the memory on.
struct Grant {
  BufferInfo buffer;
  AccessMode mode = AccessMode::kReadWrite;
  LeaseId lease = 0;  // the lease the new hold is under
  // Keeps the memory object (and its fd) alive while the fd is being sent,
  // even if the hold is released concurrently. For a pooled buffer, the
  // whole arena's.
  std::shared_ptr<const MemoryObject> memory;
  UniqueFd read_only_fd;  // set for read-only grants

  int fd_to_send() const {
    return read_only_fd.valid() ? read_only_fd.get() : memory->fd();
  }
};

// Memory a daemon stopping for a restart can leave with a service manager
// (systemd's fd store) for its successor: a dedicated memfd buffer's
// segment, or a whole pooled arena (Registry::MemoryToKeep).
struct KeptMemory {
  enum class Kind { kBuffer, kArena };
  Kind kind = Kind::kBuffer;
  uint64_t id = 0;  // the buffer's handle, or the arena's id
  std::shared_ptr<const MemoryObject> memory;
};

// What taking kept memory back did (Registry::AdoptKept).
struct KeptAdoption {
  uint64_t buffers = 0;  // restored buffers that are live again
  uint64_t bytes = 0;    // their charged bytes
};

// What ending a connection or leases did.
struct CloseResult {
  uint64_t holds_dropped = 0;
  uint64_t buffers_reclaimed = 0;
  uint64_t bytes_reclaimed = 0;
  uint64_t leases_ended = 0;
  // Connections whose default lease ended: they are closed in the registry,
  // and the transport should hang up on them.
  std::vector<ConnectionId> connections_closed;
  // ExpireLeases: the deadlines of the leases it expired, so the caller can
  // measure deadline -> memory free once the memory is gone.
  std::vector<absl::Time> expired_deadlines;
  // ExpireLeases: whether more leases were already due (call again).
  bool more_due = false;
};

// A lease and the buffers held under it (LeaseTimeToLive).
struct LeaseDetail {
  LeaseInfo info;
  std::vector<std::pair<Handle, uint32_t>> holds;  // handle, count
};

// What Registry::Restore took back from a previous daemon's books.
struct RestoreResult {
  uint64_t buffers = 0;
  uint64_t bytes = 0;
  uint64_t posix_reopened = 0;  // adopted at once, by name
  uint64_t leases = 0;
  uint64_t holds = 0;
  uint64_t skipped = 0;  // entries that did not fit (each logged by name)
  std::vector<std::string> problems;  // the first few, for the log
};

// What Registry::Resume did, in the order asked.
struct ResumeResult {
  std::vector<std::pair<LeaseId, absl::StatusOr<LeaseInfo>>> leases;
  std::vector<std::pair<Handle, absl::Status>> buffers;
};

struct RegistryStats {
  uint64_t capacity_bytes = 0;
  // Charged for live buffers (pooled ones: their slots and runs).
  uint64_t allocated_bytes = 0;
  // What counts against the capacity: dedicated buffers plus whole arenas.
  uint64_t committed_bytes = 0;
  uint64_t pooled_buffers = 0;
  uint64_t buffers = 0;
  uint64_t memfd_buffers = 0;
  uint64_t posix_buffers = 0;
  uint64_t clients = 0;
  uint64_t holds = 0;
  uint64_t leases = 0;
  uint64_t detached_leases = 0;
  uint64_t waiters = 0;   // waiting Attach calls
  uint64_t watchers = 0;  // open Watch streams
  uint64_t revision = 0;  // of the last change (core/watch_hub.h)
  // Restored after a restart, still waiting for a client to present it.
  uint64_t awaiting_memory = 0;
};

// What one tenant (an owner uid) has allocated.
struct TenantUsage {
  uid_t uid = 0;
  uint64_t allocated_bytes = 0;
  uint64_t buffers = 0;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_REGISTRY_TYPES_H_
