// Arena: one fixed-size sealed memfd that belongs to exactly one tenant,
// carved into spans of slots (small buffers) and page runs (medium ones).
//
// ArenaSegment is the memory: the memfd the clients map, plus the daemon's
// own MAP_SHARED mapping of it, through which the daemon zeroes dirty memory
// and punches holes. It is shared (std::shared_ptr) so zeroing and punching
// can run after the allocator's lock is dropped, and so a block handed out
// keeps the memfd open while its fd is being sent.
//
// Arena is the bookkeeping: a PageHeap over the arena's pages; the live
// extents (spans and page runs) by start page, which is how Free finds what
// an offset belongs to; and per size class the spans that have a free slot.
// A span whose last slot is freed goes back to the page heap at once, unless
// it is the only span of its class with room: that one is kept ("cached"),
// so a steady alloc/free of one class does not carve and release a span
// each time, until the scavenger finds it idle past the scavenge delay.
//
// Arena is not thread-safe: PooledAllocator calls it under its mutex.
// ArenaSegment is immutable after creation; its methods may run unlocked on
// ranges that no one else is using.
#ifndef SHMBROKER_CORE_ARENA_H_
#define SHMBROKER_CORE_ARENA_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/capacity_budget.h"
#include "core/memory_object.h"
#include "core/page_heap.h"
#include "core/size_classes.h"
#include "core/span.h"

namespace shmbroker {

class ArenaSegment {
 public:
  // A sealed memfd (0600) of `size` bytes, mapped MAP_SHARED in the daemon.
  // With `prefault`, every page is allocated now (fallocate) and mapped
  // populated (MAP_POPULATE): the pages are then charged to the daemon's
  // memory cgroup. Without it no page exists until someone touches it, and
  // each page is charged to the cgroup of its first toucher (a client, or
  // the daemon when it zeroes a page nobody touched).
  static absl::StatusOr<std::shared_ptr<ArenaSegment>> Create(
      uint64_t size, bool prefault, const std::string& label);
  ~ArenaSegment();
  ArenaSegment(const ArenaSegment&) = delete;
  ArenaSegment& operator=(const ArenaSegment&) = delete;

  const std::shared_ptr<const MemoryObject>& memory() const { return memory_; }
  uint64_t size() const { return memory_->size(); }
  char* data() const { return base_; }

  // Returns [offset, offset + length), whole pages, to the OS with
  // fallocate(PUNCH_HOLE | KEEP_SIZE): every mapping then reads zeroes and
  // faults fresh pages on the next touch. Sealed memfds allow it (only
  // F_SEAL_WRITE forbids it).
  absl::Status Punch(uint64_t offset, uint64_t length) const;
  // Zeroes [offset, offset + length): by punching the whole pages inside it
  // when length >= punch_min_bytes (memset for the partial pages at either
  // end, and for everything if punching fails), by memset otherwise.
  void Zero(uint64_t offset, uint64_t length, uint64_t punch_min_bytes) const;
  // Bytes of the memfd backed by pages (st_blocks), whoever touched them.
  uint64_t ResidentBytes() const;

 private:
  ArenaSegment(std::shared_ptr<const MemoryObject> memory, char* base)
      : memory_(std::move(memory)), base_(base) {}

  std::shared_ptr<const MemoryObject> memory_;
  char* base_;  // the daemon's mapping of all of memory_
};

// A byte range of an arena that must be zeroed before it is handed out.
struct ZeroRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Where a block went, and what must be zeroed before the caller gets it.
struct Placement {
  uint64_t offset = 0;             // from the start of the arena
  uint64_t charged = 0;            // slot or page-run bytes
  std::vector<ZeroRange> to_zero;  // empty (no allocation) when clean
};

struct SizeClassUsage {
  uint64_t spans = 0;
  uint64_t free_slots = 0;
  uint64_t live_slots = 0;
};

// Every byte of an arena is in exactly one of the first four fields.
struct ArenaUsage {
  uint64_t in_use_bytes = 0;     // live slots and live page runs
  uint64_t free_slot_bytes = 0;  // free slots in spans
  uint64_t span_tail_bytes = 0;  // span tails no slot covers
  uint64_t free_page_bytes = 0;  // free pages, and pages being scavenged
  uint64_t live_blocks = 0;
  uint64_t largest_free_run_bytes = 0;
  std::array<SizeClassUsage, kNumSizeClasses> size_classes{};
};

class Arena {
 public:
  Arena(uint64_t id, TenantId tenant, std::shared_ptr<ArenaSegment> segment,
        absl::Time now);
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  uint64_t id() const { return id_; }
  TenantId tenant() const { return tenant_; }
  const std::shared_ptr<ArenaSegment>& segment() const { return segment_; }
  uint64_t size() const { return segment_->size(); }

  // A slot of class `size_class` for `size` bytes, or nullopt if the arena
  // has no room for another span of that class. With `zeroed`, to_zero
  // lists the first `size` bytes if the slot is dirty.
  std::optional<Placement> AllocateSlot(int size_class, uint64_t size,
                                        bool zeroed);
  // A page-aligned run of whole pages for `size` bytes (> 0), or nullopt.
  // With `zeroed`, to_zero lists the dirty pages among the first `size`
  // bytes.
  std::optional<Placement> AllocateRun(uint64_t size, bool zeroed);
  // Frees the live block that starts at `offset`; returns the bytes it was
  // charged. NOT_FOUND if no live block starts there.
  absl::StatusOr<uint64_t> Free(uint64_t offset, absl::Time now);

  uint64_t live_blocks() const { return live_blocks_; }
  // When live_blocks() last became 0 (or the arena was made).
  absl::Time empty_since() const { return empty_since_; }
  // No live block and no scavenger at work on it: nothing refers to it.
  bool Unused() const { return live_blocks_ == 0 && scavenging_pages_ == 0; }

  // Gives cached empty spans that became empty at or before `cutoff` back
  // to the page heap; returns how many.
  int ReleaseIdleSpans(absl::Time cutoff);
  // PageHeap::TakeScavengeable / ReturnScavenged, keeping count of pages
  // out with the scavenger.
  std::vector<PageHeap::Run> TakeScavengeable(absl::Time cutoff,
                                              uint32_t max_pages);
  void ReturnScavenged(PageHeap::Run run, bool zero);

  ArenaUsage Usage() const;
  const PageHeap& heap() const { return heap_; }

 private:
  // A live span or page run: 16 bytes, 24 with its key in a btree node.
  struct Extent {
    uint32_t pages = 0;
    std::unique_ptr<Span> span;  // null for a page run
  };
  using ExtentMap = absl::btree_map<uint32_t, Extent>;

  // Frees a span's pages to the heap as of `free_since`.
  void ReleaseSpan(ExtentMap::iterator extent, absl::Time free_since);
  void OnBlockFreed(uint64_t charged, absl::Time now);

  const uint64_t id_;
  const TenantId tenant_;
  const std::shared_ptr<ArenaSegment> segment_;
  PageHeap heap_;
  ExtentMap extents_;
  // Per size class: the spans with a free slot, by start page.
  std::array<absl::btree_map<uint32_t, Span*>, kNumSizeClasses> partial_;
  // Per size class, spans and live slots, kept as they come and go (the
  // free_slots field stays 0: Usage() derives it, as every span of a class
  // has the same slots). Usage() runs on every Status call and scrape under
  // the pool's lock, and a walk of the spans there took 150 us at a million
  // live 64-byte slots.
  std::array<SizeClassUsage, kNumSizeClasses> class_usage_{};
  uint64_t live_blocks_ = 0;
  uint64_t in_use_bytes_ = 0;
  uint32_t scavenging_pages_ = 0;
  absl::Time empty_since_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_ARENA_H_
