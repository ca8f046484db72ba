// PooledAllocator: options, arenas per tenant, growth to capacity, stats,
// concurrency. Zeroing and scavenging: pooled_allocator_scavenge_test.cc.
#include "core/pooled_allocator.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "core/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/pooled_allocator_fixture.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::Mapping;
using ::shmbroker::testing::RefusedBy;
using ::shmbroker::testing::StatusIs;
using ::shmbroker::testing::pooled::AllBytesAre;
using ::shmbroker::testing::pooled::Blocks;
using ::shmbroker::testing::pooled::Inode;
using ::shmbroker::testing::pooled::kAliceUid;
using ::shmbroker::testing::pooled::kArena;
using ::shmbroker::testing::pooled::kBobUid;
using ::shmbroker::testing::pooled::PooledAllocatorTest;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Code = absl::StatusCode;

TEST_F(PooledAllocatorTest, RejectsBadOptions) {
  auto create = [&](PooledAllocatorOptions options) {
    return PooledAllocator::Create(options, &capacity_, &clock_).status();
  };
  PooledAllocatorOptions options = Options();
  options.arena_size = kArena + 100;
  EXPECT_THAT(create(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("arena size")));
  options.arena_size = 64 * 1024;
  EXPECT_THAT(create(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("arena size")));
  options = Options();
  options.pooled_max_size = kArena + 1;
  EXPECT_THAT(create(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("pooled max size")));
  options = Options();
  options.scavenge_delay = absl::Seconds(-1);
  EXPECT_THAT(create(options),
              StatusIs(Code::kInvalidArgument, HasSubstr("scavenge delay")));
  options = Options();
  options.scavenge_max_pages = 0;
  EXPECT_THAT(create(options), StatusIs(Code::kInvalidArgument,
                                        HasSubstr("scavenge max pages")));
}

TEST_F(PooledAllocatorTest, PoolsUpToAQuarterArenaByDefault) {
  EXPECT_EQ(allocator_->options().pooled_max_size, kArena / 4);
  EXPECT_FALSE(allocator_->ShouldPool(0));
  EXPECT_TRUE(allocator_->ShouldPool(1));
  EXPECT_TRUE(allocator_->ShouldPool(kArena / 4));
  EXPECT_FALSE(allocator_->ShouldPool(kArena / 4 + 1));
  auto refused =
      StatusIs(Code::kInvalidArgument,
               AllOf(HasSubstr("pooled max size"), HasSubstr("262144")));
  EXPECT_THAT(allocator_->Allocate(kAliceUid, 0, false), refused);
  EXPECT_THAT(allocator_->Allocate(kAliceUid, kArena / 4 + 1, false), refused);
  EXPECT_EQ(allocator_->Stats().arenas, 0u);
}

TEST_F(PooledAllocatorTest, BlocksAreWindowsOfTheArenaMemfd) {
  const PooledBlock small = MustAllocate(kAliceUid, 100);
  const PooledBlock medium = MustAllocate(kAliceUid, 100 * 1024);
  EXPECT_EQ(small.arena_id, medium.arena_id);
  EXPECT_EQ(small.size, 100u);
  EXPECT_EQ(small.charged, 128u);
  EXPECT_EQ(small.offset % 64, 0u);
  EXPECT_EQ(medium.size, 100u * 1024);
  EXPECT_EQ(medium.charged, 25 * kPageSize);
  EXPECT_EQ(medium.offset % kPageSize, 0u);
  ASSERT_NE(small.arena_memory, nullptr);
  EXPECT_EQ(small.arena_memory->size(), kArena);
  EXPECT_EQ(small.arena_memory, medium.arena_memory);
  // What a client writes through its mapping, another mapping sees.
  std::unique_ptr<Mapping> writer = Map(small);
  std::unique_ptr<Mapping> reader = Map(small);
  std::memset(writer->data() + medium.offset, 'm', medium.size);
  std::memset(writer->data() + small.offset, 's', small.size);
  EXPECT_TRUE(AllBytesAre(reader->data() + medium.offset, medium.size, 'm'));
  EXPECT_TRUE(AllBytesAre(reader->data() + small.offset, small.size, 's'));
}

TEST_F(PooledAllocatorTest, FreeRejectsUnknownBlocks) {
  const PooledBlock block = MustAllocate(kAliceUid, 64);
  EXPECT_THAT(allocator_->Free(block.arena_id + 1, block.offset),
              StatusIs(Code::kNotFound, HasSubstr("no pooled arena")));
  EXPECT_THAT(allocator_->Free(block.arena_id, block.offset + 64),
              StatusIs(Code::kNotFound, HasSubstr("no live pooled block")));
  MustFree(block);
  EXPECT_THAT(allocator_->Free(block.arena_id, block.offset),
              StatusIs(Code::kNotFound, HasSubstr("no live pooled block")));
}

TEST_F(PooledAllocatorTest, ArenasGrowToCapacityAndNoFurther) {
  // Four quarter-arena runs fill an arena; the capacity holds four arenas.
  std::vector<PooledBlock> blocks;
  for (int i = 0; i < 16; ++i)
    blocks.push_back(MustAllocate(kAliceUid, kArena / 4));
  PooledAllocatorStats stats = allocator_->Stats();
  EXPECT_EQ(stats.arenas, 4u);
  EXPECT_EQ(stats.arena_bytes, 4 * kArena);
  EXPECT_EQ(capacity_.committed(), 4 * kArena);
  EXPECT_EQ(stats.in_use_bytes, 4 * kArena);
  EXPECT_EQ(stats.free_bytes, 0u);

  EXPECT_THAT(allocator_->Allocate(kAliceUid, 64, false),
              AllOf(StatusIs(Code::kResourceExhausted,
                             HasSubstr("needs a new 1048576-byte arena")),
                    RefusedBy(Limit::kCapacity)));
  EXPECT_EQ(allocator_->Stats().arenas, 4u);

  // Freed room is used again without a new arena.
  MustFree(blocks[5]);
  const PooledBlock again = MustAllocate(kAliceUid, 64);
  EXPECT_EQ(again.arena_id, blocks[5].arena_id);
  EXPECT_EQ(allocator_->Stats().arenas_created_total, 4u);
}

TEST_F(PooledAllocatorTest, TenantsNeverShareAnArena) {
  const PooledBlock alice = MustAllocate(kAliceUid, 64);
  const PooledBlock bob = MustAllocate(kBobUid, 64);
  EXPECT_NE(alice.arena_id, bob.arena_id);
  EXPECT_NE(Inode(alice), Inode(bob));
  const PooledAllocatorStats stats = allocator_->Stats();
  ASSERT_EQ(stats.tenants.size(), 2u);
  EXPECT_EQ(stats.tenants[0].tenant, kAliceUid);
  EXPECT_EQ(stats.tenants[0].arenas, 1u);
  EXPECT_EQ(stats.tenants[0].in_use_bytes, 64u);
  EXPECT_EQ(stats.tenants[1].tenant, kBobUid);
}

TEST_F(PooledAllocatorTest, AnEmptyArenaStaysWithItsTenantForTheDelay) {
  const PooledBlock first = MustAllocate(kAliceUid, 64 * 1024);
  MustFree(first);
  EXPECT_EQ(allocator_->Stats().arenas, 1u) << "kept for reuse";
  clock_.Advance(absl::Minutes(5) - absl::Seconds(1));
  EXPECT_EQ(allocator_->Scavenge(clock_.Now()).arenas_released, 0u);
  const PooledBlock second = MustAllocate(kAliceUid, 64 * 1024);
  EXPECT_EQ(second.arena_id, first.arena_id);
  MustFree(second);

  clock_.Advance(absl::Minutes(5));
  const ScavengeResult result = allocator_->Scavenge(clock_.Now());
  EXPECT_EQ(result.arenas_released, 1u);
  EXPECT_EQ(allocator_->Stats().arenas, 0u);
  EXPECT_EQ(allocator_->Stats().arenas_released_total, 1u);
  EXPECT_EQ(capacity_.committed(), 0u);
  // Its memfd stays open while a block refers to it: the fd is still an
  // open memfd of the arena's size.
  struct stat st {};
  ASSERT_EQ(::fstat(second.arena_memory->fd(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kArena);
}

class TightCapacityTest : public PooledAllocatorTest {
 protected:
  TightCapacityTest() : PooledAllocatorTest(kArena) {}
};

TEST_F(TightCapacityTest, AnotherTenantsUnusedArenaMakesRoom) {
  const PooledBlock alice = MustAllocate(kAliceUid, 4096);
  std::unique_ptr<Mapping> alice_view = Map(alice);
  std::memset(alice_view->data(), 'A', kArena);  // secrets everywhere
  MustFree(alice);

  // No room for a second arena: Alice's unused one is retired, and Bob gets
  // a new memfd, not hers punched.
  const PooledBlock bob = MustAllocate(kBobUid, 4096, /*zeroed=*/false);
  EXPECT_NE(bob.arena_id, alice.arena_id);
  EXPECT_NE(Inode(bob), Inode(alice));
  std::unique_ptr<Mapping> bob_view = Map(bob);
  EXPECT_TRUE(AllBytesAre(bob_view->data(), kArena, 0));
  const PooledAllocatorStats stats = allocator_->Stats();
  EXPECT_EQ(stats.arenas, 1u);
  EXPECT_EQ(stats.arenas_released_total, 1u);
  EXPECT_EQ(stats.zeroed_bytes_total, 0u) << "a new memfd needs no zeroing";
  EXPECT_EQ(capacity_.committed(), kArena);
}

TEST_F(TightCapacityTest, AnArenaInUseIsNeverTaken) {
  const PooledBlock alice = MustAllocate(kAliceUid, 64);
  EXPECT_THAT(allocator_->Allocate(kBobUid, 64, false),
              AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("uid 1001")),
                    RefusedBy(Limit::kCapacity)));
  MustFree(alice);
  EXPECT_THAT(allocator_->Allocate(kBobUid, 64, false), IsOk());
}

TEST_F(PooledAllocatorTest, StatsAccountForEveryByte) {
  std::vector<PooledBlock> blocks;
  for (uint64_t size : {64u, 64u, 100u, 3000u, 3000u, 40000u, 70000u}) {
    blocks.push_back(MustAllocate(kAliceUid, size));
  }
  MustFree(blocks[1]);
  const PooledAllocatorStats stats = allocator_->Stats();
  EXPECT_EQ(stats.live_blocks, 6u);
  EXPECT_EQ(stats.in_use_bytes,
            64 + 128 + 2 * 3072 + 10 * kPageSize + 18 * kPageSize);
  EXPECT_EQ(stats.arena_bytes,
            stats.in_use_bytes + stats.free_bytes + stats.span_tail_bytes);
  EXPECT_EQ(stats.free_bytes, stats.free_slot_bytes + stats.free_page_bytes);
  // Spans: class 64 (2 pages), 128 (2), 3072 (3); runs: 10 and 18 pages.
  EXPECT_EQ(stats.free_page_bytes, kArena - (2 + 2 + 3 + 10 + 18) * kPageSize);
  EXPECT_EQ(stats.largest_free_run_bytes, stats.free_page_bytes);
  const SizeClassStats& c64 = stats.size_classes[SizeClassFor(64)];
  EXPECT_EQ(c64.size, 64u);
  EXPECT_EQ(c64.spans, 1u);
  EXPECT_EQ(c64.live_slots, 1u);
  EXPECT_EQ(c64.free_slots, 127u);
  const SizeClassStats& c3072 = stats.size_classes[SizeClassFor(3000)];
  EXPECT_EQ(c3072.span_pages, 3u);
  EXPECT_EQ(c3072.free_slots, 2u);
  EXPECT_EQ(stats.span_tail_bytes, 0u + 0u + 0u);
}

TEST_F(PooledAllocatorTest, PrefaultedArenasAreResidentAndKnownZero) {
  PooledAllocatorOptions options = Options();
  options.prefault = true;
  Make(options);
  const PooledBlock block = MustAllocate(kAliceUid, 64, /*zeroed=*/true);
  EXPECT_EQ(Blocks(block), kArena);
  EXPECT_EQ(allocator_->ResidentBytes(), kArena);
  EXPECT_EQ(allocator_->Stats().zeroed_bytes_total, 0u);
  // Known-zero pages are never punched, so prefaulting survives scavenging.
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(allocator_->Scavenge(clock_.Now()).scavenged_bytes, 0u);
  EXPECT_EQ(Blocks(block), kArena);
}

// docs/architecture.md ("Memory"): metadata per live buffer stays small and
// constant (<= 128 B).
TEST(PooledAllocatorMetadataTest, PerBufferRecordsAreSmall) {
  EXPECT_LE(sizeof(PooledBlock), 48u);
  // A span's record, shared by all its slots; a slot itself is two bits.
  EXPECT_LE(sizeof(Span), 72u);
}

TEST_F(PooledAllocatorTest, DestructionReturnsTheCapacity) {
  MustAllocate(kAliceUid, 64);
  MustAllocate(kBobUid, 64);
  EXPECT_EQ(capacity_.committed(), 2 * kArena);
  allocator_.reset();
  EXPECT_EQ(capacity_.committed(), 0u);
}

TEST_F(PooledAllocatorTest, ConcurrentUseKeepsBlocksApart) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 300;
  std::vector<std::thread> threads;
  std::vector<int> ok(kThreads, 1);  // not vector<bool>: one per thread
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const TenantId tenant = kAliceUid + t % 2;
      std::vector<std::pair<PooledBlock, std::unique_ptr<Mapping>>> held;
      for (int round = 0; round < kRounds; ++round) {
        const uint64_t size = 64 + (round * 977 + t * 131) % 50000;
        absl::StatusOr<PooledBlock> block =
            allocator_->Allocate(tenant, size, round % 3 == 0);
        if (!block.ok()) {
          ok[t] = 0;
          return;
        }
        auto view = std::make_unique<Mapping>(block->arena_memory->fd(), kArena,
                                              PROT_READ | PROT_WRITE);
        std::memset(view->data() + block->offset, 't' + t, block->size);
        held.emplace_back(*block, std::move(view));
        if (held.size() > 8) {
          auto& [old, old_view] = held.front();
          if (!AllBytesAre(old_view->data() + old.offset, old.size, 't' + t) ||
              !allocator_->Free(old.arena_id, old.offset).ok()) {
            ok[t] = 0;
            return;
          }
          held.erase(held.begin());
        }
        if (round % 50 == 0) allocator_->Scavenge(clock_.Now());
      }
      for (auto& [block, view] : held) {
        if (!allocator_->Free(block.arena_id, block.offset).ok()) ok[t] = 0;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(ok[t]) << t;
  const PooledAllocatorStats stats = allocator_->Stats();
  EXPECT_EQ(stats.live_blocks, 0u);
  EXPECT_EQ(stats.in_use_bytes, 0u);
  EXPECT_EQ(capacity_.committed(), stats.arena_bytes);
}

}  // namespace
}  // namespace shmbroker
