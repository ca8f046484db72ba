#include "core/span.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <iterator>
#include <optional>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

uint32_t MustAllocate(Span& span) {
  std::optional<Span::Taken> taken = span.Allocate();
  EXPECT_TRUE(taken.has_value());
  return taken.has_value() ? taken->slot : UINT32_MAX;
}

TEST(SpanTest, HandsOutSlotsLowestFirstAcrossWords) {
  // Class 64: 128 slots, two bitmap words.
  Span span = Span::ForClass(/*start_page=*/10, SizeClassFor(64),
                             /*zero=*/true);
  ASSERT_EQ(span.slots(), 128u);
  EXPECT_TRUE(span.empty());
  for (uint32_t i = 0; i < 128; ++i) ASSERT_EQ(MustAllocate(span), i);
  EXPECT_TRUE(span.full());
  EXPECT_FALSE(span.Allocate().has_value());

  // Freed slots come back lowest first, whichever word they are in.
  span.Free(100);
  span.Free(3);
  span.Free(64);
  span.Free(63);
  EXPECT_EQ(span.free_slots(), 4u);
  EXPECT_EQ(MustAllocate(span), 3u);
  EXPECT_EQ(MustAllocate(span), 63u);
  EXPECT_EQ(MustAllocate(span), 64u);
  EXPECT_EQ(MustAllocate(span), 100u);
  EXPECT_TRUE(span.full());
}

TEST(SpanTest, BitsPastTheLastSlotAreNeverHandedOut) {
  // Class 192: 42 slots, part of one word.
  Span span = Span::ForClass(0, SizeClassFor(192), true);
  ASSERT_EQ(span.slots(), 42u);
  std::set<uint32_t> seen;
  while (std::optional<Span::Taken> taken = span.Allocate()) {
    EXPECT_LT(taken->slot, 42u);
    EXPECT_TRUE(seen.insert(taken->slot).second);
  }
  EXPECT_EQ(seen.size(), 42u);
}

TEST(SpanTest, OffsetsAreNaturallyAlignedAndFoundAgain) {
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const uint32_t size = kSizeClasses[c].size;
    SCOPED_TRACE(size);
    Span span = Span::ForClass(/*start_page=*/7, c, true);
    // The largest power of two dividing the size, up to a page.
    const uint64_t align =
        std::min<uint64_t>(uint64_t{1} << std::countr_zero(size), kPageSize);
    for (uint32_t slot = 0; slot < span.slots(); ++slot) {
      const uint64_t offset = span.SlotOffset(slot);
      EXPECT_EQ(offset % align, 0u);
      EXPECT_GE(offset, 7 * kPageSize);
      EXPECT_LE(offset + size, (7 + span.pages()) * kPageSize);
      EXPECT_EQ(span.SlotAt(offset), slot);
      if (size > kMinSlotSize) {
        EXPECT_EQ(span.SlotAt(offset + 64), std::nullopt);
      }
    }
    EXPECT_EQ(span.SlotAt(7 * kPageSize - 64), std::nullopt);
    EXPECT_EQ(span.SlotAt(span.SlotOffset(span.slots() - 1) + size),
              std::nullopt);
  }
}

TEST(SpanTest, SlotsFromZeroPagesAreCleanUntilHandedOut) {
  Span span = Span::ForClass(0, SizeClassFor(1024), /*zero=*/true);
  EXPECT_FALSE(span.AnyDirty());
  std::optional<Span::Taken> first = span.Allocate();
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->was_dirty);
  EXPECT_TRUE(span.IsDirty(first->slot)) << "the holder may write it";
  EXPECT_TRUE(span.AnyDirty());
  span.Free(first->slot);
  EXPECT_TRUE(span.IsDirty(first->slot)) << "freed memory stays dirty";
  std::optional<Span::Taken> again = span.Allocate();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->slot, first->slot);
  EXPECT_TRUE(again->was_dirty);
  // Its neighbour was never handed out.
  std::optional<Span::Taken> next = span.Allocate();
  ASSERT_TRUE(next.has_value());
  EXPECT_FALSE(next->was_dirty);
}

TEST(SpanTest, SlotsFromDirtyPagesStartDirty) {
  Span span = Span::ForClass(0, SizeClassFor(256), /*zero=*/false);
  EXPECT_TRUE(span.AnyDirty());
  std::optional<Span::Taken> taken = span.Allocate();
  ASSERT_TRUE(taken.has_value());
  EXPECT_TRUE(taken->was_dirty);
}

TEST(SpanTest, RandomAllocFreeMatchesASet) {
  std::mt19937 rng(42);
  Span span = Span::ForClass(0, SizeClassFor(64), true);
  std::set<uint32_t> live;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || (rng() % 2 == 0 && !span.full())) {
      const uint32_t slot = MustAllocate(span);
      ASSERT_TRUE(live.insert(slot).second) << "slot handed out twice";
      // Always the lowest free slot.
      for (uint32_t lower = 0; lower < slot; ++lower) {
        ASSERT_TRUE(live.count(lower)) << lower;
      }
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      span.Free(*it);
      live.erase(it);
    }
    ASSERT_EQ(span.free_slots(), span.slots() - live.size());
    for (uint32_t slot = 0; slot < span.slots(); ++slot) {
      ASSERT_EQ(span.IsFree(slot), live.count(slot) == 0);
    }
  }
}

}  // namespace
}  // namespace shmbroker
