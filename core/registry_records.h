// The Registry's records (core/registry.h): what it keeps per buffer, per
// client connection and per ended lease, and its live counts. Not an API:
// only the Registry uses them, under its mutex.
#ifndef SHMBROKER_CORE_REGISTRY_RECORDS_H_
#define SHMBROKER_CORE_REGISTRY_RECORDS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/identity.h"
#include "core/ids.h"
#include "core/lease_table.h"
#include "core/memory_object.h"
#include "core/registry_observer.h"
#include "core/registry_types.h"

namespace shmbroker::registry_internal {

struct BufferRecord {
  BufferInfo info;  // holders kept current
  // Null while being created, or restored and awaiting its memory.
  // Pooled: the arena's memory.
  std::shared_ptr<const MemoryObject> memory;
  // Restored from a previous daemon's books (registry_restore.cc).
  struct Restored {
    MemoryIdentity expected;  // the object its memory must be
    bool awaiting = true;     // no memory presented yet
    absl::Status refused;     // why the last presentation failed
  };
  std::unique_ptr<Restored> restored;
  // A pooled buffer in a previous daemon's arena: charged to the
  // capacity like a dedicated one, never returned to the pool.
  bool outside_pool = false;
  bool live = false;  // counted in live_: it has had its memory
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
