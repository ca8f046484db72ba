// PooledAllocator: lazy zeroing (dirty vs known-zero memory) and the
// scavenger (idle runs punched, bounded per call, idle spans released).
#include <sys/mman.h>

#include <cstdint>
#include <cstring>

#include "absl/time/time.h"
#include "core/pooled_allocator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/pooled_allocator_fixture.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::Mapping;
using ::shmbroker::testing::pooled::AllBytesAre;
using ::shmbroker::testing::pooled::Blocks;
using ::shmbroker::testing::pooled::kAliceUid;
using ::shmbroker::testing::pooled::PooledAllocatorTest;

TEST_F(PooledAllocatorTest, DirtyMemoryIsZeroedOnlyWhenAsked) {
  const PooledBlock first = MustAllocate(kAliceUid, 1000);
  std::unique_ptr<Mapping> view = Map(first);
  std::memset(view->data() + first.offset, 'x', first.size);
  MustFree(first);

  // Same tenant, not asked: the old bytes are still there.
  const PooledBlock plain = MustAllocate(kAliceUid, 1000, /*zeroed=*/false);
  ASSERT_EQ(plain.offset, first.offset);
  EXPECT_TRUE(AllBytesAre(view->data() + plain.offset, plain.size, 'x'));
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 0u);
  MustFree(plain);

  // Asked: zeroed, and counted.
  const PooledBlock zeroed = MustAllocate(kAliceUid, 1000, /*zeroed=*/true);
  ASSERT_EQ(zeroed.offset, first.offset);
  EXPECT_TRUE(AllBytesAre(view->data() + zeroed.offset, zeroed.size, 0));
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 1000u);
}

TEST_F(PooledAllocatorTest, KnownZeroMemoryIsNotZeroedAgain) {
  // Keeps the arena from being retired by the scavenger below.
  const PooledBlock keep = MustAllocate(kAliceUid, 128 * 1024);
  // Fresh arena memory, small and medium.
  std::vector<PooledBlock> blocks;
  for (uint64_t size : {64u, 5000u, 32768u, 40000u, 200000u}) {
    blocks.push_back(MustAllocate(kAliceUid, size, /*zeroed=*/true));
  }
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 0u);
  std::unique_ptr<Mapping> view = Map(blocks[0]);
  for (const PooledBlock& b : blocks) {
    EXPECT_TRUE(AllBytesAre(view->data() + b.offset, b.size, 0));
    std::memset(view->data() + b.offset, 'd', b.size);
    MustFree(b);
  }
  // Scavenged memory is zero again: no zeroing either.
  clock_.Advance(absl::Minutes(6));
  allocator_->Scavenge(clock_.Now());
  const PooledBlock run = MustAllocate(kAliceUid, 200000, /*zeroed=*/true);
  ASSERT_EQ(run.arena_id, keep.arena_id);
  EXPECT_TRUE(AllBytesAre(view->data() + run.offset, run.size, 0));
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 0u);
}

TEST_F(PooledAllocatorTest, LargeDirtyRunsAreZeroedByPunching) {
  PooledAllocatorOptions options = Options();
  options.zero_punch_min_bytes = 64 * 1024;
  Make(options);
  const PooledBlock first = MustAllocate(kAliceUid, 200 * 1024);
  std::unique_ptr<Mapping> view = Map(first);
  std::memset(view->data() + first.offset, 'x', first.size);
  const uint64_t resident = Blocks(first);
  MustFree(first);
  const PooledBlock again = MustAllocate(kAliceUid, 200 * 1024, true);
  ASSERT_EQ(again.offset, first.offset);
  EXPECT_EQ(Blocks(again), resident - 200 * 1024) << "punched, not memset";
  EXPECT_TRUE(AllBytesAre(view->data() + again.offset, again.size, 0));
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 200u * 1024);
}

TEST_F(PooledAllocatorTest, ScavengerPunchesIdleRunsOnly) {
  const PooledBlock old_block = MustAllocate(kAliceUid, 128 * 1024);
  const PooledBlock young_block = MustAllocate(kAliceUid, 128 * 1024);
  const PooledBlock live = MustAllocate(kAliceUid, 128 * 1024);
  std::unique_ptr<Mapping> view = Map(live);
  for (const PooledBlock* b : {&old_block, &young_block, &live}) {
    std::memset(view->data() + b->offset, 'z', b->size);
  }
  EXPECT_EQ(Blocks(live), 3 * 128 * 1024u);
  MustFree(old_block);
  clock_.Advance(absl::Minutes(3));
  MustFree(young_block);
  clock_.Advance(absl::Minutes(3));

  // The old run has been free 6 minutes, the young one 3.
  const ScavengeResult result = allocator_->Scavenge(clock_.Now());
  EXPECT_EQ(result.scavenged_bytes, 128u * 1024);
  EXPECT_FALSE(result.more);
  EXPECT_EQ(Blocks(live), 2 * 128 * 1024u) << "st_blocks dropped";
  EXPECT_TRUE(AllBytesAre(view->data() + old_block.offset, old_block.size, 0));
  EXPECT_TRUE(
      AllBytesAre(view->data() + young_block.offset, young_block.size, 'z'));
  EXPECT_TRUE(AllBytesAre(view->data() + live.offset, live.size, 'z'));
  EXPECT_EQ(allocator_->Stats().scavenged_bytes_total, 128u * 1024);
  EXPECT_EQ(allocator_->Stats().arenas, 1u) << "a live block keeps it";

  // Nothing new is idle; then the young run is.
  EXPECT_EQ(allocator_->Scavenge(clock_.Now()).scavenged_bytes, 0u);
  clock_.Advance(absl::Minutes(3));
  EXPECT_EQ(allocator_->Scavenge(clock_.Now()).scavenged_bytes, 128u * 1024);
  EXPECT_EQ(allocator_->Stats().scavenged_bytes_total, 256u * 1024);
}

TEST_F(PooledAllocatorTest, ScavengerWorkIsBoundedPerCall) {
  PooledAllocatorOptions options = Options();
  options.scavenge_max_pages = 16;
  Make(options);
  const PooledBlock run = MustAllocate(kAliceUid, 40 * kPageSize);
  const PooledBlock live = MustAllocate(kAliceUid, 64);
  std::unique_ptr<Mapping> view = Map(run);
  std::memset(view->data() + run.offset, 'z', run.size);
  MustFree(run);
  clock_.Advance(absl::Minutes(10));
  std::vector<uint64_t> per_call;
  for (int i = 0; i < 5; ++i) {
    const ScavengeResult result = allocator_->Scavenge(clock_.Now());
    per_call.push_back(result.scavenged_bytes / kPageSize);
    if (!result.more) break;
  }
  EXPECT_THAT(per_call, ::testing::ElementsAre(16, 16, 8));
  EXPECT_TRUE(AllBytesAre(view->data() + run.offset, run.size, 0));
  EXPECT_EQ(view->data()[live.offset], 0);
}

TEST_F(PooledAllocatorTest, ScavengerReleasesIdleSpans) {
  const PooledBlock slot = MustAllocate(kAliceUid, 64);
  const PooledBlock keep = MustAllocate(kAliceUid, 100 * 1024);
  MustFree(slot);
  EXPECT_EQ(allocator_->Stats().size_classes[0].spans, 1u) << "cached";
  clock_.Advance(absl::Minutes(5));
  const ScavengeResult result = allocator_->Scavenge(clock_.Now());
  EXPECT_EQ(result.spans_released, 1u);
  EXPECT_EQ(result.scavenged_bytes, 2 * kPageSize) << "its dirty pages";
  EXPECT_EQ(allocator_->Stats().size_classes[0].spans, 0u);
  MustFree(keep);
}

}  // namespace
}  // namespace shmbroker
