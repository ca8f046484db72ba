// Registry: the daemon's authority on buffers, client connections and holds.
//
// A client connection (ClientId) is opened with its kernel-verified identity.
// Allocate creates a buffer with one hold owned by the calling connection;
// Attach adds a hold (subject to the buffer's ACL); Release drops one of the
// connection's own holds; CloseClient drops all of them. A buffer is reclaimed
// (its memory object closed and unlinked, its bytes returned to the capacity)
// the moment its last hold goes. Counts live here, never in shared pages, so a
// crashed client cannot leave them wrong.
//
// Thread-safe: one mutex guards all state; memory objects are created and
// destroyed outside it.
#ifndef SHMBROKER_CORE_REGISTRY_H_
#define SHMBROKER_CORE_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/access.h"
#include "core/clock.h"
#include "core/identity.h"
#include "core/memory_object.h"
#include "core/registry_observer.h"

namespace shmbroker {

using ClientId = uint64_t;
using Handle = uint64_t;

struct RegistryOptions {
  uint64_t capacity_bytes = uint64_t{1} << 30;
  uint64_t max_buffers = 100000;
  uint32_t max_holds_per_client = 65536;
  uint32_t max_clients_per_uid = 256;
  // POSIX shm names are "<shm_prefix>.<handle>"; must start with '/'.
  std::string shm_prefix = "/shmbroker";
};

// Names a buffer by handle (when non-zero) or by name.
struct BufferRef {
  Handle handle = 0;
  std::string name;
  static BufferRef ByHandle(Handle h) { return {h, {}}; }
  static BufferRef ByName(std::string n) { return {0, std::move(n)}; }
  std::string ToString() const;
};

struct AllocateSpec {
  uint64_t size = 0;
  std::string name;  // empty: unnamed
  Backing backing = Backing::kMemfd;
  std::vector<ShareRule> share;
};

struct BufferInfo {
  Handle handle = 0;
  std::string name;
  uint64_t size = 0;
  uint64_t charged_bytes = 0;  // size rounded up to whole pages
  Backing backing = Backing::kMemfd;
  Identity owner;
  std::vector<ShareRule> share;
  absl::Time created;
  uint32_t holders = 0;
  std::string shm_name;
};

// A hold just taken, with what the caller needs to pass the memory on.
struct Grant {
  BufferInfo buffer;
  AccessMode mode = AccessMode::kReadWrite;
  // Keeps the memory object (and its fd) alive while the fd is being sent,
  // even if the hold is released concurrently.
  std::shared_ptr<const MemoryObject> memory;
  UniqueFd read_only_fd;  // set for read-only grants

  int fd_to_send() const {
    return read_only_fd.valid() ? read_only_fd.get() : memory->fd();
  }
};

struct CloseResult {
  uint64_t holds_dropped = 0;
  uint64_t buffers_reclaimed = 0;
  uint64_t bytes_reclaimed = 0;
};

struct RegistryStats {
  uint64_t capacity_bytes = 0;
  uint64_t allocated_bytes = 0;
  uint64_t buffers = 0;
  uint64_t memfd_buffers = 0;
  uint64_t posix_buffers = 0;
  uint64_t clients = 0;
  uint64_t holds = 0;
};

// What one tenant (an owner uid) has allocated.
struct TenantUsage {
  uid_t uid = 0;
  uint64_t allocated_bytes = 0;
  uint64_t buffers = 0;
};

class Registry {
 public:
  // `observer` (not owned, may be null) must outlive the Registry.
  explicit Registry(RegistryOptions options, const Clock* clock = RealClock(),
                    RegistryObserver* observer = nullptr);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  const RegistryOptions& options() const { return options_; }

  // RESOURCE_EXHAUSTED when the uid has max_clients_per_uid connections.
  absl::StatusOr<ClientId> OpenClient(const Identity& identity);
  // Drops every hold of the connection and reclaims what nobody else holds.
  // Unknown ids are a no-op (returns zeros).
  CloseResult CloseClient(ClientId client,
                          ReclaimReason reason = ReclaimReason::kClientClosed);

  absl::StatusOr<Grant> Allocate(ClientId client, const AllocateSpec& spec);
  absl::StatusOr<Grant> Attach(ClientId client, const BufferRef& ref,
                               AccessRequest request);
  // Drops one hold that `client` owns on `handle`; returns the holders left.
  absl::StatusOr<uint32_t> Release(ClientId client, Handle handle);

  absl::StatusOr<BufferInfo> Describe(const Identity& caller,
                                      const BufferRef& ref) const;
  // Buffers `caller` may see with handle > `after`, ascending, at most
  // `limit`; `*more` says whether further ones exist.
  std::vector<BufferInfo> List(const Identity& caller, Handle after,
                               size_t limit, bool* more) const;
  RegistryStats Stats() const;
  // Usage per owner uid, largest first.
  std::vector<TenantUsage> Tenants() const;
  // Bytes of live buffers' memory actually backed by pages (st_blocks), which
  // is less than allocated for memory never touched. O(buffers) fstat calls,
  // made without the lock.
  uint64_t ResidentBytes() const;

 private:
  struct BufferRecord {
    BufferInfo info;                       // holders kept current
    std::shared_ptr<MemoryObject> memory;  // null while being created
  };
  struct ClientRecord {
    Identity identity;
    absl::flat_hash_map<Handle, uint32_t> holds;  // handle -> count
    uint64_t hold_count = 0;
  };

  // The handle of the live (not pending) buffer `ref` names, or NOT_FOUND /
  // INVALID_ARGUMENT (bad name).
  absl::StatusOr<Grant> DoAllocate(ClientId client, const AllocateSpec& spec);
  absl::StatusOr<Handle> ResolveLocked(const BufferRef& ref) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckHoldLimitLocked(const ClientRecord& client) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops `count` holds of `client` on `handle`; moves the memory of a
  // reclaimed buffer to `doomed` so it is destroyed after unlocking.
  uint32_t DropHoldsLocked(ClientRecord& client, Handle handle, uint32_t count,
                           std::vector<std::shared_ptr<MemoryObject>>& doomed,
                           ReclaimReason reason, CloseResult* result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseBufferLocked(Handle handle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RegistryOptions options_;
  const Clock* const clock_;
  RegistryObserver* const observer_;  // never null (a no-op if none given)

  mutable absl::Mutex mu_;
  absl::btree_map<Handle, BufferRecord> buffers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Handle> names_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ClientId, ClientRecord> clients_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uid_t, uint32_t> clients_per_uid_ ABSL_GUARDED_BY(mu_);
  uint64_t allocated_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t hold_count_ ABSL_GUARDED_BY(mu_) = 0;
  Handle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  ClientId next_client_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_REGISTRY_H_
