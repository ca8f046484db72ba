// The Registry's records (core/registry.h): what it keeps per buffer, per
// client connection and per ended lease, and its live counts. Not an API:
// only the Registry uses them, under its mutex.
#ifndef SHMBROKER_CORE_REGISTRY_RECORDS_H_
#define SHMBROKER_CORE_REGISTRY_RECORDS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/identity.h"
#include "core/ids.h"
#include "core/lease_table.h"
#include "core/memory_object.h"
#include "core/registry_observer.h"
#include "core/registry_types.h"

namespace shmbroker::registry_internal {

// One buffer, compact (#15: metadata per live buffer, measured in
// docs/performance.md). A pooled, unnamed, owner-only buffer, the common
// case at scale, is these 64 bytes and nothing else: its handle is the
// table's key, its memory is its arena's (Registry::arena_memory_), and
// whatever only some buffers have (a name, share rules, a POSIX name, a
// dedicated segment, a restart's state) is in BufferExtras, allocated only for
// them. Info(handle) gives the BufferInfo the rest of the daemon sees.
// A buffer restored from a previous daemon's books (registry_restore.cc).
struct RestoredBuffer {
  MemoryIdentity expected;  // the object its memory must be
  bool awaiting = true;     // no memory presented yet
  absl::Status refused;     // why the last presentation failed
};

// What only some buffers have (BufferRecord::extras).
struct BufferExtras {
  std::string name;
  std::string shm_name;
  std::vector<ShareRule> share;
  // A dedicated buffer's segment (pooled ones: Registry::MemoryLocked).
  std::shared_ptr<const MemoryObject> memory;
  std::optional<RestoredBuffer> restored;
};

struct BufferRecord {
  uint64_t size = 0;
  uint64_t charged_bytes = 0;  // as in BufferInfo
  uint64_t offset = 0;         // pooled only
  int64_t created_unix_nanos = 0;
  std::unique_ptr<BufferExtras> extras;  // null: none of it
  Identity owner;
  uint32_t holders = 0;
  // Arena ids are handed out from 1 up: 2^32 of them is beyond any
  // daemon's life, and restored ones above it are refused (Restore).
  uint32_t arena_id = 0;  // pooled only
  Backing backing = Backing::kMemfd;
  BufferKind kind = BufferKind::kDedicated;
  bool sealed : 1 = false;
  // A pooled buffer in a previous daemon's arena: charged to the
  // capacity like a dedicated one, never returned to the pool.
  bool outside_pool : 1 = false;
  bool live : 1 = false;        // counted in live_: it has had its memory
  bool has_memory : 1 = false;  // false while being created or restored

  BufferExtras& MutableExtras() {
    if (extras == nullptr) extras = std::make_unique<BufferExtras>();
    return *extras;
  }
  absl::string_view name() const {
    return extras != nullptr ? absl::string_view(extras->name) : "";
  }
  absl::string_view shm_name() const {
    return extras != nullptr ? absl::string_view(extras->shm_name) : "";
  }
  absl::Span<const ShareRule> share() const {
    return extras != nullptr ? absl::Span<const ShareRule>(extras->share)
                             : absl::Span<const ShareRule>();
  }
  RestoredBuffer* restored() const {
    return extras != nullptr && extras->restored.has_value()
               ? &*extras->restored
               : nullptr;
  }
  absl::Time created() const { return absl::FromUnixNanos(created_unix_nanos); }
  // Everything but what the record's memory is.
  BufferInfo Info(Handle handle) const;
  // Takes `info` (its handle is the table's key; arena_id must fit).
  void Assign(const BufferInfo& info);
};
static_assert(sizeof(BufferRecord) <= 64, "#15: see docs/performance.md");

// What a pooled buffer's memory is: its arena's, shared by every buffer in
// it that the Registry knows, and kept while any of them is.
struct ArenaMemory {
  std::shared_ptr<const MemoryObject> memory;
  uint64_t buffers = 0;
};

struct ConnectionRecord {
  Identity identity;
  LeaseId default_lease = 0;
  // Its leases, default and detached ones included (a detached lease
  // leaves this set when the connection closes).
  absl::flat_hash_set<LeaseId> leases;
};

// Why a lease id is no longer live, for clear errors.
struct EndedLease {
  ReclaimReason reason;
  absl::Time when;
};

// A lease that ended and whose holds are still being dropped, in steps.
struct DrainingLease {
  LeaseRecord record;
  ReclaimReason reason;
};

// A rewrite of the books under way (core/books.h, registry_books.cc): where
// it has got to. Buffers go first, in handle order from `next_handle`; then
// the leases listed when the buffers were done (live and draining), each
// with its holds, listed when its turn came. Entities made or changed after
// they were listed reach the new journal as changes. One step, of
// RegistryOptions::books_rewrite_step entities, at the end of each hold of
// the lock that changed the books.
struct BooksRewrite {
  bool buffers_done = false;
  Handle next_handle = 0;
  std::vector<LeaseId> leases;
  size_t next_lease = 0;
  LeaseId lease = 0;          // whose holds are being added
  std::vector<Handle> holds;  // of `lease`
  size_t next_hold = 0;
};

// Buffers with their memory, by kind and backing, counted as they come
// and go so that Stats() (every Status call and scrape) scans nothing.
struct LiveCounts {
  uint64_t buffers = 0;
  uint64_t pooled = 0;
  uint64_t posix = 0;
  uint64_t memfd = 0;
};

}  // namespace shmbroker::registry_internal

#endif  // SHMBROKER_CORE_REGISTRY_RECORDS_H_
