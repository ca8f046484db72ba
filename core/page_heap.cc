#include "core/page_heap.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <iterator>
#include <limits>

namespace shmbroker {
namespace {

// Calls fn(word, mask) for each word of a page bitmap that [start, start +
// pages) touches, with the mask of the bits it covers: range operations go
// 64 pages at a time (a 16 MiB run is 64 words, not 4096 bits).
template <typename Fn>
void ForEachWord(uint32_t start, uint32_t pages, Fn fn) {
  const uint32_t end = start + pages;
  for (uint32_t p = start; p < end;) {
    const uint32_t word = p / 64;
    const uint32_t low = p % 64;
    const uint32_t high = std::min<uint32_t>(64, low + (end - p));
    const uint64_t mask =
        (high == 64 ? ~uint64_t{0} : (uint64_t{1} << high) - 1) &
        ~((uint64_t{1} << low) - 1);
    fn(word, mask);
    p += high - low;
  }
}

}  // namespace

PageHeap::PageHeap(uint32_t pages, absl::Time epoch)
    : epoch_(epoch),
      zero_((uint64_t{pages} + 63) / 64, 0),
      free_since_(pages, 0) {
  SetZero(0, pages, true);
  if (pages > 0) AddRun(0, pages);
  free_pages_ = pages;
}

uint32_t PageHeap::Stamp(absl::Time t) const {
  if (t <= epoch_) return 0;
  const int64_t seconds =
      absl::ToInt64Seconds(absl::Ceil(t - epoch_, absl::Seconds(1)));
  return static_cast<uint32_t>(
      std::min<int64_t>(seconds, std::numeric_limits<uint32_t>::max()));
}

void PageHeap::SetZero(uint32_t start, uint32_t pages, bool zero) {
  ForEachWord(start, pages, [&](uint32_t word, uint64_t mask) {
    if (zero) {
      zero_[word] |= mask;
    } else {
      zero_[word] &= ~mask;
    }
  });
}

uint32_t PageHeap::CountZero(uint32_t start, uint32_t pages) const {
  uint32_t count = 0;
  ForEachWord(start, pages, [&](uint32_t word, uint64_t mask) {
    count += std::popcount(zero_[word] & mask);
  });
  return count;
}

std::vector<PageHeap::Run> PageHeap::DirtyRuns(uint32_t start,
                                               uint32_t pages) const {
  std::vector<Run> runs;
  const uint32_t end = start + pages;
  for (uint32_t p = start; p < end;) {
    if (IsZero(p)) {
      ++p;
      continue;
    }
    uint32_t q = p;
    while (q < end && !IsZero(q)) ++q;
    runs.push_back({p, q - p});
    p = q;
  }
  return runs;
}

void PageHeap::AddRun(uint32_t start, uint32_t pages) {
  by_start_.emplace(start, pages);
  by_size_.emplace(pages, start);
}

void PageHeap::EraseRun(uint32_t start, uint32_t pages) {
  by_start_.erase(start);
  by_size_.erase({pages, start});
}

std::optional<uint32_t> PageHeap::Allocate(uint32_t pages) {
  assert(pages > 0);
  auto fit = by_size_.lower_bound({pages, 0});
  if (fit == by_size_.end()) return std::nullopt;
  const auto [run_pages, start] = *fit;
  EraseRun(start, run_pages);
  if (run_pages > pages) AddRun(start + pages, run_pages - pages);
  free_pages_ -= pages;
  dirty_free_pages_ -= pages - CountZero(start, pages);
  return start;
}

void PageHeap::Free(uint32_t start, uint32_t pages, absl::Time free_since,
                    bool untouched) {
  assert(pages > 0 && start + pages <= this->pages());
  const uint32_t stamp = Stamp(free_since);
  std::fill(free_since_.begin() + start, free_since_.begin() + start + pages,
            stamp);
  if (untouched) {
    dirty_free_pages_ += pages - CountZero(start, pages);
  } else {
    SetZero(start, pages, false);
    dirty_free_pages_ += pages;
  }
  InsertFree(start, pages);
}

void PageHeap::InsertFree(uint32_t start, uint32_t pages) {
  uint32_t first = start;
  uint32_t count = pages;
  auto next = by_start_.lower_bound(start);
  if (next != by_start_.begin()) {
    auto prev = std::prev(next);
    assert(prev->first + prev->second <= start && "double free");
    if (prev->first + prev->second == start) {
      first = prev->first;
      count += prev->second;
      EraseRun(prev->first, prev->second);
    }
  }
  next = by_start_.lower_bound(start);
  if (next != by_start_.end()) {
    assert(next->first >= start + pages && "double free");
    if (next->first == start + pages) {
      count += next->second;
      EraseRun(next->first, next->second);
    }
  }
  AddRun(first, count);
  free_pages_ += pages;
}

void PageHeap::RemoveFree(Run run) {
  auto it = by_start_.upper_bound(run.start);
  assert(it != by_start_.begin());
  --it;
  const uint32_t start = it->first;
  const uint32_t pages = it->second;
  assert(start <= run.start && run.end() <= start + pages);
  EraseRun(start, pages);
  if (run.start > start) AddRun(start, run.start - start);
  if (run.end() < start + pages) AddRun(run.end(), start + pages - run.end());
  free_pages_ -= run.pages;
}

std::vector<PageHeap::Run> PageHeap::TakeScavengeable(absl::Time cutoff,
                                                      uint32_t max_pages) {
  std::vector<Run> taken;
  if (dirty_free_pages_ == 0 || max_pages == 0 || cutoff < epoch_) {
    return taken;
  }
  // Eligible stamps are at most floor(cutoff - epoch): stamps were rounded
  // up, so such a page has really been free since at or before `cutoff`.
  const int64_t limit =
      absl::ToInt64Seconds(absl::Floor(cutoff - epoch_, absl::Seconds(1)));
  auto eligible = [&](uint32_t p) {
    return !IsZero(p) && free_since_[p] <= limit;
  };
  uint32_t budget = max_pages;
  for (const auto& [start, pages] : by_start_) {
    const uint32_t end = start + pages;
    for (uint32_t p = start; p < end && budget > 0;) {
      if (!eligible(p)) {
        ++p;
        continue;
      }
      uint32_t q = p;
      while (q < end && q - p < budget && eligible(q)) ++q;
      taken.push_back({p, q - p});
      budget -= q - p;
      p = q;
    }
    if (budget == 0) break;
  }
  // Edit the runs only now: the loop above iterates over them.
  for (const Run& run : taken) {
    RemoveFree(run);
    dirty_free_pages_ -= run.pages;
  }
  return taken;
}

void PageHeap::ReturnScavenged(Run run, bool zero) {
  if (zero) {
    SetZero(run.start, run.pages, true);
  } else {
    dirty_free_pages_ += run.pages;
  }
  InsertFree(run.start, run.pages);
}

}  // namespace shmbroker
