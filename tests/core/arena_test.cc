#include "core/arena.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::Mapping;
using ::shmbroker::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kArenaSize = uint64_t{1} << 20;  // 256 pages
const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

std::shared_ptr<ArenaSegment> MustSegment(uint64_t size = kArenaSize,
                                          bool prefault = false) {
  absl::StatusOr<std::shared_ptr<ArenaSegment>> segment =
      ArenaSegment::Create(size, prefault, "arena-test");
  EXPECT_THAT(segment, IsOk());
  return segment.ok() ? *segment : nullptr;
}

bool AllZero(const char* data, uint64_t length) {
  for (uint64_t i = 0; i < length; ++i) {
    if (data[i] != 0) return false;
  }
  return true;
}

TEST(ArenaSegmentTest, IsASealedPrivateMemfd) {
  std::shared_ptr<ArenaSegment> segment = MustSegment();
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(segment->size(), kArenaSize);
  EXPECT_EQ(segment->memory()->backing(), Backing::kMemfd);
  EXPECT_EQ(::fcntl(segment->memory()->fd(), F_GET_SEALS),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_EQ(segment->ResidentBytes(), 0u) << "no page until touched";
}

TEST(ArenaSegmentTest, PunchReturnsPagesAndEveryMappingReadsZero) {
  std::shared_ptr<ArenaSegment> segment = MustSegment();
  ASSERT_NE(segment, nullptr);
  // A client's mapping of the same memfd.
  Mapping client(segment->memory()->fd(), kArenaSize, PROT_READ | PROT_WRITE);
  ASSERT_TRUE(client.ok());
  std::memset(client.data(), 0xab, 64 * kPageSize);
  EXPECT_EQ(segment->ResidentBytes(), 64 * kPageSize);
  EXPECT_EQ(segment->data()[0], static_cast<char>(0xab));

  ASSERT_THAT(segment->Punch(16 * kPageSize, 32 * kPageSize), IsOk());
  EXPECT_EQ(segment->ResidentBytes(), 32 * kPageSize);
  EXPECT_TRUE(AllZero(client.data() + 16 * kPageSize, 32 * kPageSize));
  EXPECT_TRUE(AllZero(segment->data() + 16 * kPageSize, 32 * kPageSize));
  EXPECT_EQ(client.data()[16 * kPageSize - 1], static_cast<char>(0xab));
  EXPECT_EQ(client.data()[48 * kPageSize], static_cast<char>(0xab));
}

TEST(ArenaSegmentTest, ZeroBelowThePunchThresholdUsesMemset) {
  std::shared_ptr<ArenaSegment> segment = MustSegment();
  ASSERT_NE(segment, nullptr);
  char* data = segment->data();
  std::memset(data, 0x5a, 8 * kPageSize);
  segment->Zero(100, 3 * kPageSize, /*punch_min_bytes=*/UINT64_MAX);
  EXPECT_TRUE(AllZero(data + 100, 3 * kPageSize));
  EXPECT_EQ(data[99], 0x5a);
  EXPECT_EQ(data[100 + 3 * kPageSize], 0x5a);
  EXPECT_EQ(segment->ResidentBytes(), 8 * kPageSize) << "pages kept";
}

TEST(ArenaSegmentTest, ZeroAtThePunchThresholdPunchesWholePages) {
  std::shared_ptr<ArenaSegment> segment = MustSegment();
  ASSERT_NE(segment, nullptr);
  char* data = segment->data();
  std::memset(data, 0x5a, 8 * kPageSize);
  // Pages 1..5 are whole inside; parts of 0 and 6 are memset.
  segment->Zero(100, 6 * kPageSize, /*punch_min_bytes=*/kPageSize);
  EXPECT_TRUE(AllZero(data + 100, 6 * kPageSize));
  EXPECT_EQ(data[99], 0x5a);
  EXPECT_EQ(data[100 + 6 * kPageSize], 0x5a);
  // Reading the holes above faulted them back in, so check st_blocks on a
  // fresh hole instead.
  std::memset(data, 0x5a, 8 * kPageSize);
  const uint64_t before = segment->ResidentBytes();
  segment->Zero(0, 4 * kPageSize, kPageSize);
  EXPECT_EQ(segment->ResidentBytes(), before - 4 * kPageSize);
}

TEST(ArenaSegmentTest, PrefaultAllocatesEveryPage) {
  std::shared_ptr<ArenaSegment> segment =
      MustSegment(kArenaSize, /*prefault=*/true);
  ASSERT_NE(segment, nullptr);
  EXPECT_EQ(segment->ResidentBytes(), kArenaSize);
  EXPECT_TRUE(AllZero(segment->data(), kArenaSize));
}

class ArenaTest : public ::testing::Test {
 protected:
  ArenaTest() : arena_(7, /*tenant=*/1000, MustSegment(), kStart) {}

  Placement MustSlot(uint64_t size, bool zeroed = false) {
    std::optional<Placement> p =
        arena_.AllocateSlot(SizeClassFor(size), size, zeroed);
    EXPECT_TRUE(p.has_value()) << size;
    return p.value_or(Placement{});
  }
  Placement MustRun(uint64_t size, bool zeroed = false) {
    std::optional<Placement> p = arena_.AllocateRun(size, zeroed);
    EXPECT_TRUE(p.has_value()) << size;
    return p.value_or(Placement{});
  }
  void MustFree(uint64_t offset) {
    EXPECT_THAT(arena_.Free(offset, kStart), IsOk()) << offset;
  }
  SizeClassUsage ClassUsage(uint64_t size) const {
    return arena_.Usage().size_classes[SizeClassFor(size)];
  }

  Arena arena_;
};

TEST_F(ArenaTest, SlotsOfOneClassShareASpan) {
  const Placement a = MustSlot(100);
  const Placement b = MustSlot(128);
  EXPECT_EQ(a.charged, 128u);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(b.offset, 128u);
  EXPECT_EQ(ClassUsage(128).spans, 1u);
  EXPECT_EQ(ClassUsage(128).live_slots, 2u);
  EXPECT_EQ(ClassUsage(128).free_slots, 62u);
  const Placement c = MustSlot(1000);  // another class, another span
  EXPECT_EQ(c.offset, 2 * kPageSize);
  EXPECT_EQ(arena_.live_blocks(), 3u);
}

TEST_F(ArenaTest, KeepsOneEmptySpanPerClassAndReleasesTheRest) {
  // Two full spans of class 4096 (two slots each), then one more slot.
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 5; ++i) offsets.push_back(MustSlot(4096).offset);
  EXPECT_EQ(ClassUsage(4096).spans, 3u);
  const uint32_t free_pages = arena_.heap().free_pages();
  for (uint64_t offset : offsets) MustFree(offset);
  // The span emptied last was the only one with room: it stays.
  EXPECT_EQ(ClassUsage(4096).spans, 1u);
  EXPECT_EQ(arena_.heap().free_pages(), free_pages + 4);
  EXPECT_EQ(arena_.live_blocks(), 0u);
  EXPECT_TRUE(arena_.Unused());
  // The next slot comes from it, without the page heap.
  const uint32_t now_free = arena_.heap().free_pages();
  MustSlot(4096);
  EXPECT_EQ(arena_.heap().free_pages(), now_free);
}

TEST_F(ArenaTest, IdleSpansGoBackAtTheCutoff) {
  MustFree(MustSlot(64).offset);
  EXPECT_EQ(ClassUsage(64).spans, 1u);
  EXPECT_EQ(arena_.ReleaseIdleSpans(kStart - absl::Seconds(1)), 0);
  EXPECT_EQ(arena_.ReleaseIdleSpans(kStart), 1);
  EXPECT_EQ(ClassUsage(64).spans, 0u);
  EXPECT_EQ(arena_.heap().free_pages(), kArenaSize / kPageSize);
  EXPECT_EQ(arena_.heap().dirty_free_pages(), 2u);
}

TEST_F(ArenaTest, RunsArePageAligned) {
  const Placement a = MustRun(kMaxSmallSize + 1);
  EXPECT_EQ(a.offset % kPageSize, 0u);
  EXPECT_EQ(a.charged, 9 * kPageSize);
  const Placement b = MustRun(100 * kPageSize);
  EXPECT_EQ(b.offset, 9 * kPageSize);
  EXPECT_EQ(b.charged, 100 * kPageSize);
  EXPECT_FALSE(arena_.AllocateRun(200 * kPageSize, false).has_value());
  MustFree(a.offset);
  MustFree(b.offset);
  EXPECT_EQ(arena_.heap().largest_free_run(), kArenaSize / kPageSize);
}

TEST_F(ArenaTest, ARunMayTakeCachedEmptySpans) {
  MustFree(MustSlot(64).offset);  // a cached span at pages 0..1
  EXPECT_EQ(arena_.heap().largest_free_run(), kArenaSize / kPageSize - 2);
  const Placement whole = MustRun(kArenaSize);
  EXPECT_EQ(whole.offset, 0u);
  EXPECT_EQ(ClassUsage(64).spans, 0u);
}

TEST_F(ArenaTest, ZeroedAsksOnlyForDirtyMemory) {
  // Fresh memory is known-zero.
  const Placement slot = MustSlot(500, /*zeroed=*/true);
  EXPECT_TRUE(slot.to_zero.empty());
  MustFree(slot.offset);
  // Dirty now: the requested bytes, not the whole slot.
  const Placement again = MustSlot(500, true);
  EXPECT_EQ(again.offset, slot.offset);
  ASSERT_EQ(again.to_zero.size(), 1u);
  EXPECT_EQ(again.to_zero[0].offset, slot.offset);
  EXPECT_EQ(again.to_zero[0].length, 500u);
  // Without `zeroed`, nothing.
  MustFree(again.offset);
  EXPECT_TRUE(MustSlot(500, false).to_zero.empty());

  // A dirty run: the requested bytes, not the rest of its last page.
  const Placement run = MustRun(40 * kPageSize);
  MustFree(run.offset);
  const Placement reused = MustRun(30 * kPageSize + 100, true);
  EXPECT_EQ(reused.offset, run.offset);
  ASSERT_EQ(reused.to_zero.size(), 1u);
  EXPECT_EQ(reused.to_zero[0].offset, run.offset);
  EXPECT_EQ(reused.to_zero[0].length, 30 * kPageSize + 100);
}

TEST_F(ArenaTest, ZeroedRunSkipsKnownZeroPages) {
  const Placement dirty = MustRun(4 * kPageSize);  // pages 0..3
  MustFree(dirty.offset);
  // 0..3 dirty, 4.. zero; a run of 10 pages covers both.
  const Placement run = MustRun(10 * kPageSize, true);
  EXPECT_EQ(run.offset, 0u);
  ASSERT_EQ(run.to_zero.size(), 1u);
  EXPECT_EQ(run.to_zero[0].offset, 0u);
  EXPECT_EQ(run.to_zero[0].length, 4 * kPageSize);
}

TEST_F(ArenaTest, FreeRejectsWhatIsNotALiveBlock) {
  const Placement slot = MustSlot(256);
  const Placement run = MustRun(64 * 1024);
  auto not_found = StatusIs(absl::StatusCode::kNotFound,
                            HasSubstr("no live pooled block at offset"));
  EXPECT_THAT(arena_.Free(slot.offset + 64, kStart), not_found);
  EXPECT_THAT(arena_.Free(slot.offset + 256, kStart), not_found)
      << "a free slot";
  EXPECT_THAT(arena_.Free(run.offset + kPageSize, kStart), not_found);
  EXPECT_THAT(arena_.Free(kArenaSize - kPageSize, kStart), not_found);
  EXPECT_THAT(arena_.Free(kArenaSize, kStart), not_found);
  EXPECT_THAT(arena_.Free(UINT64_MAX, kStart), not_found);
  MustFree(slot.offset);
  EXPECT_THAT(arena_.Free(slot.offset, kStart), not_found) << "double free";
  MustFree(run.offset);
  EXPECT_THAT(arena_.Free(run.offset, kStart), not_found) << "double free";
  EXPECT_EQ(arena_.live_blocks(), 0u);
}

}  // namespace
}  // namespace shmbroker
