// PooledAllocator: many small and medium buffers in a few big segments.
//
// Why. A dedicated segment per buffer costs a memfd, an fd pass, an mmap, an
// munmap and fresh page faults every time. Most buffers are small or are
// recycled, so, as Go's runtime malloc (itself after tcmalloc) pools
// objects, the daemon pools buffers: a client maps an arena once, and a
// recycled buffer then costs one RPC and no page fault.
//
// The pieces, smallest first (read the headers in this order):
//
//  - size_classes.h. A request of up to 32 KiB is rounded up to one of 56
//    size classes (64 B ... 32 KiB, multiples of 64 so slots never share a
//    cache line; at most 12.5% lost to rounding above 512 B). Each class has
//    a span size: the few pages that hold its slots with little left over.
//
//  - span.h. A span is a run of pages carved into slots of one class. A
//    bitmap of 64-bit words says which slots are free; allocation takes the
//    lowest with a count-trailing-zeros scan. A second bitmap says which
//    slots are dirty (may hold someone's data).
//
//  - page_heap.h. Each arena's pages are managed by a page heap: free runs
//    of pages, allocated best-fit and split, coalesced with their neighbours
//    when freed. Spans come from here, and so do medium buffers (above
//    32 KiB up to the pooled max size), which get a page-aligned run of
//    whole pages of their own. Per page the heap knows whether the page is
//    known-zero and since when it has been free.
//
//  - arena.h. An arena is one sealed memfd of fixed size (64 MiB by
//    default) with its page heap and spans. It belongs to exactly one
//    tenant: a process that maps an arena can read and write every byte of
//    it, so two tenants' buffers never share one. The daemon maps every
//    arena too, to zero memory.
//
//  - this file. The allocator keeps each tenant's arenas, tries them in
//    order for a span or a run, and adds an arena when none has room,
//    charging a whole arena to the CapacityBudget (capacity_budget.h). When
//    the budget refuses, it first retires other tenants' unused arenas;
//    then it refuses with RESOURCE_EXHAUSTED. Buffers above the pooled
//    max size (a quarter of an arena by default) do not share arenas.
//
//  - Large blocks. A buffer above the pooled max size, up to large_max_size,
//    is pooled in an arena of its own, sized to it (whole pages). Why: a
//    data loader hands over a batch of tens of MiB, again and again, of the
//    same size. A fresh segment costs a fault and a zeroed page per 4 KiB
//    in the producer and a fault per page in each consumer, every batch;
//    measured on our VMs, filling a fresh 64 MiB memfd takes 100x longer
//    than filling one whose pages are warm. When a large block is freed its
//    arena stays with its tenant, like any unused arena, and the tenant's
//    next large block of about that size (up to 1/8 smaller) reuses it:
//    warm pages in the daemon, and in every client, which keeps its mapping
//    of the arena. Small blocks never go into a large arena (only into
//    arenas of the regular size), so a large arena stays whole for reuse.
//    ShouldPool says what may be pooled; PoolsByDefault what is pooled when
//    the caller leaves the kind to the daemon (only what shares arenas:
//    keeping a large buffer's memory after its release is the caller's
//    choice, as is giving up the kernel-enforced seal of a dedicated one).
//
// Zeroing. Memory is never zeroed eagerly. A slot or page is dirty once it
// has been handed out; it is known-zero while it has never been handed out
// since its arena was made, or since the scavenger punched it. Allocate with
// `zeroed` zeroes only the dirty part of what it hands out (and counts the
// bytes in Stats().zeroed_bytes_total), by memset through the daemon's
// mapping, which keeps the pages resident so the client takes no fault on
// reuse (punching is an option; see zero_punch_min_bytes for the numbers).
//
// Tenants. Memory never passes from one tenant to another inside an arena:
// an arena's blocks go only to its own tenant, and an arena is never given
// to another tenant, not even punched whole, because the first tenant's
// processes may still map it (punching empties pages, not mappings: they
// would see the next tenant's data). An arena that becomes unused stays with
// its tenant for scavenge_delay, for reuse, unless another tenant needs the
// capacity first (or the caller asks, ReleaseUnused); then it is retired:
// punched whole (clients keep their mapping of it cached, and its pages
// must not outlive the budget's count), its memfd closed and its bytes
// returned to the budget. The next tenant gets a new memfd, which is zero.
//
// Scavenging (Go's "ready -> prepared"). Freed memory stays resident and
// dirty, so that reusing it costs nothing. Scavenge(now), driven by the
// caller's timer, returns what has stayed idle longer than scavenge_delay:
// cached empty spans go back to their page heap, dirty free pages are
// punched with fallocate(PUNCH_HOLE) and become known-zero, and arenas with
// no live block are retired. Each call punches at most scavenge_max_pages
// pages and does the punching without holding the lock.
//
// Metadata per live buffer: for a slot, two bits in its span's bitmaps and
// a share of the span (72 bytes, plus a 24-byte btree entry, per span); for
// a page run, one 24-byte btree entry. The caller keeps the PooledBlock (48
// bytes), or just its arena id and offset.
//
// Thread-safe: one mutex guards the arenas. Creating an arena's memfd,
// zeroing and punching happen outside it.
#ifndef SHMBROKER_CORE_POOLED_ALLOCATOR_H_
#define SHMBROKER_CORE_POOLED_ALLOCATOR_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/arena.h"
#include "core/capacity_budget.h"
#include "core/clock.h"
#include "core/memory_object.h"
#include "core/size_classes.h"

namespace shmbroker {

struct PooledAllocatorOptions {
  // Bytes per arena: a multiple of kPageSize, from 1 MiB to 1 TiB.
  uint64_t arena_size = uint64_t{64} << 20;
  // The largest buffer pooled; larger ones get dedicated segments. At most
  // arena_size; 0 means arena_size / 4.
  uint64_t pooled_max_size = 0;
  // The largest buffer pooled at all: those above pooled_max_size get an
  // arena of their own (a large block, above). 0 or at most pooled_max_size:
  // none. At most 1 TiB.
  uint64_t large_max_size = 0;
  // How long free memory stays as it is before Scavenge returns it: dirty
  // free pages are punched, cached empty spans and unused arenas released.
  // Five minutes, as Go's scavenger used (scavengelimit): a workload that
  // cycles through buffers every few seconds or minutes (training steps,
  // batches) keeps its pages, while memory a finished job left returns
  // within minutes.
  absl::Duration scavenge_delay = absl::Minutes(5);
  // The most pages one Scavenge call punches, at least 1. 16 MiB by default:
  // about 4 ms of CPU on our VMs (BM_Punch16MiB), done without the lock.
  uint32_t scavenge_max_pages = 4096;
  // Dirty memory handed out with `zeroed` is zeroed by punching its whole
  // pages when it is at least this long, by memset otherwise. Never, by
  // default: memset through the daemon's mapping keeps the pages resident,
  // while a punched page costs the client a fresh page fault on its next
  // touch, and faults are what pooling avoids. Measured (CPU time,
  // shmbroker-core-bench, ZeroMemset vs ZeroPunch): memset is 1600x cheaper
  // than punch + re-fault at 4 KiB, 400x at 1 MiB and 240x at 16 MiB on our
  // VMs, where a page fault costs ~15 us. Punching suits a deployment that
  // would rather return the memory than keep it warm.
  uint64_t zero_punch_min_bytes = std::numeric_limits<uint64_t>::max();
  // Allocate and map every page of an arena when it is created (fallocate +
  // MAP_POPULATE): no first-touch page faults in the daemon, cheaper (minor)
  // ones in clients, and every page charged to the daemon's memory cgroup.
  // Off: pages are charged to whichever process touches them first.
  bool prefault = false;
};

// OK, or INVALID_ARGUMENT saying which option is out of range.
absl::Status ValidatePooledAllocatorOptions(
    const PooledAllocatorOptions& options);

// One pooled buffer: `size` bytes at `offset` in arena `arena_id`.
struct PooledBlock {
  // Never reused by a later arena, so clients may key their map cache by it.
  uint64_t arena_id = 0;
  uint64_t offset = 0;   // slots: 64-byte aligned or better; runs: paged
  uint64_t size = 0;     // usable bytes, as requested
  uint64_t charged = 0;  // the slot or page-run bytes it occupies
  // The arena's memfd (the whole arena), kept open while this is alive.
  std::shared_ptr<const MemoryObject> arena_memory;
};

struct ScavengeResult {
  uint64_t scavenged_bytes = 0;  // punched this call
  uint64_t spans_released = 0;
  uint64_t arenas_released = 0;
  // The page limit stopped this call: call again soon.
  bool more = false;
};

struct SizeClassStats {
  uint32_t size = 0;
  uint32_t span_pages = 0;
  uint64_t spans = 0;
  uint64_t free_slots = 0;
  uint64_t live_slots = 0;
};

struct TenantPoolStats {
  TenantId tenant = 0;
  uint64_t arenas = 0;
  uint64_t in_use_bytes = 0;
};

struct PooledAllocatorStats {
  uint64_t arena_size = 0;
  uint64_t arenas = 0;
  uint64_t arena_bytes = 0;  // the arenas' sizes: what the budget holds
  uint64_t live_blocks = 0;
  uint64_t large_arenas = 0;  // of those, holding or kept for large blocks
  // arena_bytes == in_use_bytes + free_bytes + span_tail_bytes.
  uint64_t in_use_bytes = 0;     // slots and runs of live blocks
  uint64_t free_bytes = 0;       // free_slot_bytes + free_page_bytes
  uint64_t free_slot_bytes = 0;  // free slots in spans
  uint64_t free_page_bytes = 0;  // free pages in page heaps
  uint64_t span_tail_bytes = 0;  // span ends no slot covers
  // Fragmentation: the longest free run of pages in any one arena.
  uint64_t largest_free_run_bytes = 0;
  uint64_t scavenged_bytes_total = 0;
  uint64_t zeroed_bytes_total = 0;
  uint64_t arenas_created_total = 0;
  uint64_t arenas_released_total = 0;
  // Every class, smallest first. An array: Stats() runs on every scrape,
  // and the registry_ops fuzz target asks after every operation.
  std::array<SizeClassStats, kNumSizeClasses> size_classes{};
  std::vector<TenantPoolStats> tenants;  // tenants with arenas, by id
};

class PooledAllocator {
 public:
  // INVALID_ARGUMENT for options out of range. `budget` (not owned) must
  // outlive the allocator; it gets every arena's bytes back when the
  // allocator is destroyed.
  static absl::StatusOr<std::unique_ptr<PooledAllocator>> Create(
      PooledAllocatorOptions options, CapacityBudget* budget,
      const Clock* clock = RealClock());
  ~PooledAllocator();
  PooledAllocator(const PooledAllocator&) = delete;
  PooledAllocator& operator=(const PooledAllocator&) = delete;

  // With pooled_max_size resolved.
  const PooledAllocatorOptions& options() const { return options_; }

  // Whether a buffer of `size` bytes may be pooled (1 <= size <=
  // max_size()).
  bool ShouldPool(uint64_t size) const {
    return size > 0 && size <= max_size();
  }
  // Whether it is pooled when the caller leaves the kind to the daemon: only
  // if it shares an arena (size <= pooled_max_size).
  bool PoolsByDefault(uint64_t size) const {
    return size > 0 && size <= options_.pooled_max_size;
  }
  // The largest buffer pooled: large_max_size, or pooled_max_size when
  // there are no large blocks.
  uint64_t max_size() const {
    return std::max(options_.pooled_max_size, options_.large_max_size);
  }

  // A block of `size` bytes for `tenant`, in one of its arenas (a new one if
  // none has room). With `zeroed`, the block reads zero; without, it holds
  // whatever the tenant's earlier buffers left there. INVALID_ARGUMENT if
  // !ShouldPool(size); RESOURCE_EXHAUSTED (with the budget's message) when
  // a new arena is needed and the budget refuses it.
  absl::StatusOr<PooledBlock> Allocate(TenantId tenant, uint64_t size,
                                       bool zeroed);
  // Frees the block at `offset` in arena `arena_id`. Its memory becomes
  // dirty. NOT_FOUND if there is no such live block.
  absl::Status Free(uint64_t arena_id, uint64_t offset);

  // Returns memory idle since before now - scavenge_delay (see above).
  ScavengeResult Scavenge(absl::Time now);
  // Retires every arena with no live block now, whatever its idle time
  // (for a caller that needs the capacity back); returns the bytes freed.
  uint64_t ReleaseUnused();
  // Arena ids run from 1 to this; past it, new arenas are refused.
  static constexpr uint64_t kMaxArenaId = 0xffffffff;
  // Hands out arena ids above `last_id` only: a restarted daemon's clients
  // may still map the previous daemon's arenas under their ids.
  void ReserveArenaIds(uint64_t last_id) {
    uint64_t next = next_arena_id_.load();
    while (next <= last_id &&
           !next_arena_id_.compare_exchange_weak(next, last_id + 1)) {
    }
  }
  // The last arena id handed out (0: none).
  uint64_t last_arena_id() const { return next_arena_id_.load() - 1; }

  PooledAllocatorStats Stats() const;
  // Bytes of all arenas backed by pages (st_blocks), without the lock held
  // during the fstat calls.
  uint64_t ResidentBytes() const;

 private:
  struct Found {
    Arena* arena = nullptr;
    Placement placement;
  };

  PooledAllocator(PooledAllocatorOptions options, CapacityBudget* budget,
                  const Clock* clock);

  std::optional<Placement> PlaceIn(Arena& arena, uint64_t size,
                                   bool zeroed) const;
  std::optional<Found> PlaceLocked(TenantId tenant, uint64_t size, bool zeroed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A large block: in an unused arena of the tenant's that fits it.
  std::optional<Found> PlaceLargeLocked(TenantId tenant, uint64_t size,
                                        bool zeroed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The size of the arena a block of `size` bytes is made in.
  uint64_t ArenaSizeFor(uint64_t size) const;
  // Reserves an arena's bytes (retiring other tenants' unused arenas while
  // the budget refuses) and creates the arena. Called without the lock.
  absl::StatusOr<std::unique_ptr<Arena>> NewArena(TenantId tenant,
                                                  uint64_t size);
  void AddLocked(std::unique_ptr<Arena> arena)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<Arena> RemoveLocked(uint64_t arena_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Punches and closes a removed arena and returns its bytes. Called
  // without the lock.
  void Retire(std::unique_ptr<Arena> arena);
  // The block for `found`; counts the bytes it will zero.
  PooledBlock BlockLocked(const Found& found, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PooledAllocatorOptions options_;
  CapacityBudget* const budget_;
  const Clock* const clock_;
  std::atomic<uint64_t> next_arena_id_{1};

  mutable absl::Mutex mu_;
  absl::btree_map<uint64_t, std::unique_ptr<Arena>> arenas_
      ABSL_GUARDED_BY(mu_);
  // Each tenant's arenas, oldest first.
  absl::btree_map<TenantId, std::vector<Arena*>> by_tenant_
      ABSL_GUARDED_BY(mu_);
  uint64_t scavenged_bytes_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t zeroed_bytes_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t arenas_created_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t arenas_released_total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_POOLED_ALLOCATOR_H_
