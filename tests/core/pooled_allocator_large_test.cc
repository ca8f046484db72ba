// Large blocks: buffers above the pooled max size in arenas of their own,
// kept for their tenant's next one of about that size (warm pages).
#include <cstring>

#include "tests/core/pooled_allocator_fixture.h"

namespace shmbroker::testing::pooled {
namespace {

using ::testing::HasSubstr;

class LargeBlockTest : public PooledAllocatorTest {
 protected:
  // 16 arenas' worth: room for a few large blocks.
  LargeBlockTest() : PooledAllocatorTest(16 * kArena) {}
  void SetUp() override {
    PooledAllocatorOptions options = Options();  // pooled max: 256 KiB
    options.large_max_size = 4 * kArena;
    Make(options);
  }
  static constexpr uint64_t kLarge = 3 * kArena - 1000;  // not whole pages
  static constexpr uint64_t kLargePaged = 3 * kArena;
};

TEST_F(LargeBlockTest, WhatIsPooledAndWhatByDefault) {
  EXPECT_TRUE(allocator_->PoolsByDefault(kArena / 4));
  EXPECT_FALSE(allocator_->PoolsByDefault(kArena / 4 + 1));
  EXPECT_TRUE(allocator_->ShouldPool(kArena / 4 + 1));
  EXPECT_TRUE(allocator_->ShouldPool(4 * kArena));
  EXPECT_FALSE(allocator_->ShouldPool(4 * kArena + 1));
  EXPECT_EQ(allocator_->max_size(), 4 * kArena);
  absl::StatusOr<PooledBlock> too_big =
      allocator_->Allocate(kAliceUid, 4 * kArena + 1, false);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("1 to 4194304 bytes"));
}

TEST_F(LargeBlockTest, ALargeBlockGetsAnArenaOfItsOwnSizedToIt) {
  const PooledBlock block = MustAllocate(kAliceUid, kLarge);
  EXPECT_EQ(block.offset, 0u);
  EXPECT_EQ(block.size, kLarge);
  EXPECT_EQ(block.charged, kLargePaged);
  EXPECT_EQ(block.arena_memory->size(), kLargePaged);
  const PooledAllocatorStats stats = allocator_->Stats();
  EXPECT_EQ(stats.arenas, 1u);
  EXPECT_EQ(stats.large_arenas, 1u);
  EXPECT_EQ(stats.arena_bytes, kLargePaged);
  EXPECT_EQ(stats.in_use_bytes, kLargePaged);
  EXPECT_EQ(capacity_.committed(), kLargePaged);
}

TEST_F(LargeBlockTest, TheTenantsNextLargeBlockReusesTheWarmArena) {
  const PooledBlock first = MustAllocate(kAliceUid, kLarge);
  std::unique_ptr<Mapping> view = Map(first);
  std::memset(view->data(), 'A', kLarge);
  MustFree(first);
  EXPECT_EQ(allocator_->Stats().arenas, 1u) << "kept for reuse";

  // A little smaller still fits (at most an eighth of the arena wasted);
  // uninitialized, it keeps the tenant's own bytes, untouched.
  const PooledBlock second = MustAllocate(kAliceUid, kLarge - kArena / 4);
  EXPECT_EQ(second.arena_id, first.arena_id);
  EXPECT_EQ(Inode(second), Inode(first));
  EXPECT_TRUE(AllBytesAre(view->data(), kLarge - kArena / 4, 'A'));
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 0u);
  MustFree(second);

  // Zeroed, it reads zero, through the same warm pages.
  const PooledBlock third = MustAllocate(kAliceUid, kLarge, /*zeroed=*/true);
  EXPECT_EQ(third.arena_id, first.arena_id);
  EXPECT_TRUE(AllBytesAre(view->data(), kLarge, 0));
  EXPECT_EQ(allocator_->Stats().arenas_created_total, 1u);
}

TEST_F(LargeBlockTest, AMuchSmallerOrBiggerBlockGetsAnotherArena) {
  const PooledBlock big = MustAllocate(kAliceUid, kLargePaged);
  MustFree(big);
  // Half the size would waste half the arena: a new one.
  const PooledBlock half = MustAllocate(kAliceUid, kLargePaged / 2);
  EXPECT_NE(half.arena_id, big.arena_id);
  // Bigger never fits.
  const PooledBlock bigger = MustAllocate(kAliceUid, kLargePaged + kPageSize);
  EXPECT_NE(bigger.arena_id, big.arena_id);
  EXPECT_EQ(allocator_->Stats().arenas, 3u);
}

TEST_F(LargeBlockTest, SmallBlocksNeverGoIntoALargeArena) {
  const PooledBlock large = MustAllocate(kAliceUid, kLarge);
  MustFree(large);
  const PooledBlock small = MustAllocate(kAliceUid, 4096);
  EXPECT_NE(small.arena_id, large.arena_id);
  EXPECT_EQ(small.arena_memory->size(), kArena);
  // So the large arena is still whole for the next large block.
  const PooledBlock again = MustAllocate(kAliceUid, kLarge);
  EXPECT_EQ(again.arena_id, large.arena_id);
}

TEST_F(LargeBlockTest, TenantsNeverShareALargeArena) {
  const PooledBlock alice = MustAllocate(kAliceUid, kLarge);
  MustFree(alice);
  const PooledBlock bob = MustAllocate(kBobUid, kLarge);
  EXPECT_NE(bob.arena_id, alice.arena_id);
  EXPECT_NE(Inode(bob), Inode(alice));
}

TEST_F(LargeBlockTest, AnUnusedLargeArenaGoesAfterTheDelayOrForCapacity) {
  const PooledBlock first = MustAllocate(kAliceUid, kLarge);
  MustFree(first);
  clock_.Advance(absl::Minutes(5) + absl::Seconds(1));
  EXPECT_EQ(allocator_->Scavenge(clock_.Now()).arenas_released, 1u);
  EXPECT_EQ(capacity_.committed(), 0u);

  // Capacity 16 arenas: five large blocks of 3 fill 15. When the tenant's
  // next block is of another size, its own unused arenas of the wrong size
  // make room.
  std::vector<PooledBlock> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(MustAllocate(kAliceUid, kLarge));
  for (const PooledBlock& block : blocks) MustFree(block);
  const PooledBlock other = MustAllocate(kAliceUid, 4 * kArena);
  EXPECT_EQ(other.arena_memory->size(), 4 * kArena);
  EXPECT_EQ(capacity_.committed(), 16 * kArena);
  EXPECT_EQ(allocator_->Stats().arenas, 5u) << "one 3-arena block retired";
  EXPECT_EQ(allocator_->Stats().arenas_released_total, 2u);
}

}  // namespace
}  // namespace shmbroker::testing::pooled
