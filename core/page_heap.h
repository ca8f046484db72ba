// PageHeap: which pages of one arena are free, as runs of consecutive pages.
//
// Free runs are indexed twice: by start page, to coalesce a freed run with
// its neighbours, and by (length, start), to allocate best-fit (the smallest
// run that fits, the lowest such), splitting off what is left, as tcmalloc's
// page heap does. Allocate and Free are O(log runs).
//
// Per page it also remembers two things the allocator's memory policy needs:
//  - known-zero: the daemon knows the page holds only zeroes (never handed
//    out since the arena was created, or punched since). Free marks pages
//    dirty unless the caller knows nobody wrote them; a caller that asked for
//    zeroed memory gets dirty pages zeroed and known-zero pages as they are;
//  - free-since: when the page last became free, to the second, rounded up
//    so a page is never treated as idle early. The scavenger takes pages that
//    are dirty and have been free since before a cutoff
//    (TakeScavengeable), punches them while they are out of the heap, and
//    returns them known-zero (ReturnScavenged).
// Costs 4 bytes and one bit per page (64 KiB for a 64 MiB arena).
// Not thread-safe: the arena's owner serializes access.
#ifndef SHMBROKER_CORE_PAGE_HEAP_H_
#define SHMBROKER_CORE_PAGE_HEAP_H_

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/time/time.h"

namespace shmbroker {

class PageHeap {
 public:
  struct Run {
    uint32_t start = 0;
    uint32_t pages = 0;
    uint32_t end() const { return start + pages; }
    friend bool operator==(const Run&, const Run&) = default;
  };

  // `pages` pages, all free and known-zero. Free-since times are kept as
  // seconds after `epoch`; earlier times count as `epoch`.
  PageHeap(uint32_t pages, absl::Time epoch);

  uint32_t pages() const { return static_cast<uint32_t>(free_since_.size()); }
  uint32_t free_pages() const { return free_pages_; }
  // Free pages that are not known-zero: what the scavenger could return.
  uint32_t dirty_free_pages() const { return dirty_free_pages_; }
  size_t free_runs() const { return by_start_.size(); }
  uint32_t largest_free_run() const {
    return by_size_.empty() ? 0 : by_size_.rbegin()->first;
  }

  // Takes `pages` (> 0) consecutive free pages; returns the first, or
  // nullopt when no free run is long enough. Their known-zero bits are kept
  // so the caller can ask which ones need zeroing.
  std::optional<uint32_t> Allocate(uint32_t pages);
  // Gives back pages taken by Allocate, free since `free_since`. They
  // become dirty, unless `untouched` (nobody can have written them since
  // Allocate): then they keep the known-zero bits they had.
  void Free(uint32_t start, uint32_t pages, absl::Time free_since,
            bool untouched);

  bool IsZero(uint32_t page) const {
    return (zero_[page / 64] >> (page % 64)) & 1;
  }
  uint32_t CountZero(uint32_t start, uint32_t pages) const;
  // The maximal runs of dirty pages within [start, start + pages).
  std::vector<Run> DirtyRuns(uint32_t start, uint32_t pages) const;

  // Removes from the free runs up to `max_pages` pages that are dirty and
  // have been free since at or before `cutoff`, lowest addresses first, and
  // returns them as runs. They stay out of the heap (neither free nor
  // allocatable) until ReturnScavenged.
  std::vector<Run> TakeScavengeable(absl::Time cutoff, uint32_t max_pages);
  // Puts back a run from TakeScavengeable, keeping its free-since times;
  // known-zero if `zero` (it was punched), dirty otherwise.
  void ReturnScavenged(Run run, bool zero);

 private:
  uint32_t Stamp(absl::Time t) const;
  void SetZero(uint32_t start, uint32_t pages, bool zero);
  // Adds [start, start + pages) to the free runs, merging with neighbours.
  void InsertFree(uint32_t start, uint32_t pages);
  // Removes [run.start, run.end()), which must lie in one free run.
  void RemoveFree(Run run);
  void AddRun(uint32_t start, uint32_t pages);
  void EraseRun(uint32_t start, uint32_t pages);

  const absl::Time epoch_;
  absl::btree_map<uint32_t, uint32_t> by_start_;            // start -> pages
  absl::btree_set<std::pair<uint32_t, uint32_t>> by_size_;  // (pages, start)
  std::vector<uint64_t> zero_;        // bit per page: known-zero
  std::vector<uint32_t> free_since_;  // per page: Stamp() of its last Free
  uint32_t free_pages_ = 0;
  uint32_t dirty_free_pages_ = 0;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_PAGE_HEAP_H_
