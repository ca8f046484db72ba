#include "core/page_heap.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

using PageRun = PageHeap::Run;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kEpoch = absl::FromUnixSeconds(1'000'000);

uint32_t MustAllocate(PageHeap& heap, uint32_t pages) {
  std::optional<uint32_t> start = heap.Allocate(pages);
  EXPECT_TRUE(start.has_value()) << pages;
  return start.value_or(UINT32_MAX);
}

TEST(PageHeapTest, StartsAsOneFreeZeroRun) {
  PageHeap heap(100, kEpoch);
  EXPECT_EQ(heap.pages(), 100u);
  EXPECT_EQ(heap.free_pages(), 100u);
  EXPECT_EQ(heap.free_runs(), 1u);
  EXPECT_EQ(heap.largest_free_run(), 100u);
  EXPECT_EQ(heap.dirty_free_pages(), 0u);
  EXPECT_EQ(heap.CountZero(0, 100), 100u);
}

TEST(PageHeapTest, AllocateSplitsFromTheLowestFittingRun) {
  PageHeap heap(100, kEpoch);
  EXPECT_EQ(MustAllocate(heap, 3), 0u);
  EXPECT_EQ(MustAllocate(heap, 5), 3u);
  EXPECT_EQ(heap.free_pages(), 92u);
  EXPECT_EQ(heap.free_runs(), 1u);
  EXPECT_EQ(heap.largest_free_run(), 92u);
  EXPECT_EQ(MustAllocate(heap, 92), 8u);
  EXPECT_EQ(heap.free_runs(), 0u);
  EXPECT_FALSE(heap.Allocate(1).has_value());
}

TEST(PageHeapTest, AllocateIsBestFit) {
  PageHeap heap(20, kEpoch);
  const uint32_t a = MustAllocate(heap, 4);  // 0..3
  MustAllocate(heap, 1);                     // 4
  const uint32_t b = MustAllocate(heap, 2);  // 5..6
  MustAllocate(heap, 13);                    // 7..19
  heap.Free(a, 4, kEpoch, false);
  heap.Free(b, 2, kEpoch, false);
  // The 2-page hole fits exactly; the lower 4-page hole stays whole.
  EXPECT_EQ(MustAllocate(heap, 2), 5u);
  EXPECT_EQ(heap.largest_free_run(), 4u);
  EXPECT_EQ(MustAllocate(heap, 3), 0u);
}

TEST(PageHeapTest, FreeCoalescesWithBothNeighbours) {
  PageHeap heap(30, kEpoch);
  const uint32_t a = MustAllocate(heap, 10);
  const uint32_t b = MustAllocate(heap, 10);
  const uint32_t c = MustAllocate(heap, 10);
  heap.Free(a, 10, kEpoch, false);
  heap.Free(c, 10, kEpoch, false);
  EXPECT_EQ(heap.free_runs(), 2u);
  EXPECT_EQ(heap.largest_free_run(), 10u);
  EXPECT_FALSE(heap.Allocate(11).has_value()) << "20 pages free, not in a row";
  heap.Free(b, 10, kEpoch, false);
  EXPECT_EQ(heap.free_runs(), 1u);
  EXPECT_EQ(heap.largest_free_run(), 30u);
  EXPECT_EQ(MustAllocate(heap, 30), 0u);
}

TEST(PageHeapTest, FreeCoalescesWithOneNeighbour) {
  PageHeap heap(30, kEpoch);
  const uint32_t a = MustAllocate(heap, 10);
  const uint32_t b = MustAllocate(heap, 10);
  MustAllocate(heap, 10);
  heap.Free(b, 10, kEpoch, false);  // 10..19 free
  heap.Free(a, 10, kEpoch, false);  // merges right: 0..19
  EXPECT_EQ(heap.free_runs(), 1u);
  EXPECT_EQ(heap.largest_free_run(), 20u);
}

TEST(PageHeapTest, TracksKnownZeroPages) {
  PageHeap heap(10, kEpoch);
  const uint32_t a = MustAllocate(heap, 4);  // 0..3
  const uint32_t b = MustAllocate(heap, 6);  // 4..9
  // Pages keep their bits while allocated, so the caller can ask.
  EXPECT_EQ(heap.CountZero(a, 4), 4u);
  heap.Free(a, 4, kEpoch, /*untouched=*/false);
  EXPECT_EQ(heap.CountZero(0, 10), 6u);
  EXPECT_EQ(heap.dirty_free_pages(), 4u);
  EXPECT_THAT(heap.DirtyRuns(0, 10), ElementsAre(PageRun{0, 4}));

  // An untouched run keeps its bits: zero pages stay zero...
  heap.Free(b, 6, kEpoch, /*untouched=*/true);
  EXPECT_EQ(heap.CountZero(0, 10), 6u);
  EXPECT_EQ(heap.dirty_free_pages(), 4u);
  // ...and dirty pages stay dirty.
  const uint32_t c = MustAllocate(heap, 10);
  EXPECT_EQ(heap.dirty_free_pages(), 0u);
  heap.Free(c, 10, kEpoch, /*untouched=*/true);
  EXPECT_EQ(heap.dirty_free_pages(), 4u);
  EXPECT_THAT(heap.DirtyRuns(2, 6), ElementsAre(PageRun{2, 2}));
}

TEST(PageHeapTest, ScavengesOnlyDirtyPagesFreeSinceTheCutoff) {
  PageHeap heap(40, kEpoch);
  const uint32_t old_run = MustAllocate(heap, 10);    // 0..9
  const uint32_t young_run = MustAllocate(heap, 10);  // 10..19
  MustAllocate(heap, 10);                             // 20..29 stays live
  heap.Free(old_run, 10, kEpoch + absl::Seconds(10), false);
  heap.Free(young_run, 10, kEpoch + absl::Seconds(100), false);
  // 30..39 were never used: known-zero, nothing to return.

  EXPECT_THAT(heap.TakeScavengeable(kEpoch + absl::Seconds(9), 100), IsEmpty());
  std::vector<PageRun> taken =
      heap.TakeScavengeable(kEpoch + absl::Seconds(50), 100);
  ASSERT_THAT(taken, ElementsAre(PageRun{0, 10}));
  // Out of the heap while being punched: not free, not allocatable.
  EXPECT_EQ(heap.free_pages(), 10u + 10u);
  EXPECT_EQ(heap.dirty_free_pages(), 10u);
  ASSERT_EQ(MustAllocate(heap, 10), 10u) << "takes the young run, not 0..9";
  heap.Free(10, 10, kEpoch + absl::Seconds(100), false);

  heap.ReturnScavenged(taken[0], /*zero=*/true);
  EXPECT_EQ(heap.CountZero(0, 10), 10u);
  EXPECT_EQ(heap.dirty_free_pages(), 10u);
  EXPECT_EQ(heap.free_runs(), 2u) << "0..19 coalesced again, and 30..39";
  EXPECT_THAT(heap.TakeScavengeable(kEpoch + absl::Seconds(50), 100),
              IsEmpty());
}

TEST(PageHeapTest, ScavengeTakesAtMostMaxPagesLowestFirst) {
  PageHeap heap(64, kEpoch);
  const uint32_t all = MustAllocate(heap, 64);
  heap.Free(all, 64, kEpoch, false);
  std::vector<PageRun> first = heap.TakeScavengeable(kEpoch, 20);
  ASSERT_THAT(first, ElementsAre(PageRun{0, 20}));
  std::vector<PageRun> second = heap.TakeScavengeable(kEpoch, 20);
  ASSERT_THAT(second, ElementsAre(PageRun{20, 20}));
  heap.ReturnScavenged(first[0], true);
  heap.ReturnScavenged(second[0], /*zero=*/false);  // a punch that failed
  EXPECT_EQ(heap.dirty_free_pages(), 44u);
  // What failed stays eligible, with its old free-since time.
  EXPECT_THAT(heap.TakeScavengeable(kEpoch, 100), ElementsAre(PageRun{20, 44}));
}

TEST(PageHeapTest, FreeSinceIsRoundedSoNothingIsScavengedEarly) {
  PageHeap heap(4, kEpoch);
  const uint32_t a = MustAllocate(heap, 4);
  heap.Free(a, 4, kEpoch + absl::Milliseconds(1500), false);
  EXPECT_THAT(heap.TakeScavengeable(kEpoch + absl::Milliseconds(1999), 4),
              IsEmpty());
  EXPECT_THAT(heap.TakeScavengeable(kEpoch + absl::Seconds(2), 4),
              ElementsAre(PageRun{0, 4}));
}

TEST(PageHeapTest, TimesBeforeTheEpochCountAsTheEpoch) {
  PageHeap heap(4, kEpoch);
  const uint32_t a = MustAllocate(heap, 4);
  heap.Free(a, 4, absl::InfinitePast(), false);
  EXPECT_THAT(heap.TakeScavengeable(kEpoch - absl::Seconds(1), 4), IsEmpty());
  EXPECT_THAT(heap.TakeScavengeable(kEpoch, 4), ElementsAre(PageRun{0, 4}));
}

// A seeded random walk against a plain per-page model.
TEST(PageHeapTest, RandomWalkMatchesAPageModel) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    constexpr uint32_t kPages = 256;
    PageHeap heap(kPages, kEpoch);
    std::vector<bool> used(kPages, false);
    std::vector<PageRun> live;
    for (int step = 0; step < 5000; ++step) {
      if (live.empty() || rng() % 2 == 0) {
        const uint32_t want = 1 + rng() % 16;
        std::optional<uint32_t> start = heap.Allocate(want);
        // The model's best fit: the shortest free run >= want, lowest first.
        std::optional<uint32_t> best;
        uint32_t best_len = UINT32_MAX;
        for (uint32_t p = 0; p < kPages;) {
          if (used[p]) {
            ++p;
            continue;
          }
          uint32_t q = p;
          while (q < kPages && !used[q]) ++q;
          if (q - p >= want && q - p < best_len) {
            best = p;
            best_len = q - p;
          }
          p = q;
        }
        ASSERT_EQ(start, best);
        if (!start.has_value()) continue;
        for (uint32_t p = *start; p < *start + want; ++p) used[p] = true;
        live.push_back({*start, want});
      } else {
        const size_t i = rng() % live.size();
        heap.Free(live[i].start, live[i].pages, kEpoch, false);
        for (uint32_t p = live[i].start; p < live[i].end(); ++p)
          used[p] = false;
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      }
      // Runs: maximal free stretches, all of them coalesced.
      uint32_t free_pages = 0, runs = 0, largest = 0;
      for (uint32_t p = 0; p < kPages;) {
        if (used[p]) {
          ++p;
          continue;
        }
        uint32_t q = p;
        while (q < kPages && !used[q]) ++q;
        ++runs;
        free_pages += q - p;
        largest = std::max(largest, q - p);
        p = q;
      }
      ASSERT_EQ(heap.free_pages(), free_pages);
      ASSERT_EQ(heap.free_runs(), runs);
      ASSERT_EQ(heap.largest_free_run(), largest);
    }
  }
}

}  // namespace
}  // namespace shmbroker
