// The Registry with pooling on: which buffers are pooled, one capacity for
// dedicated pages and whole arenas, falling back, retiring unused arenas for
// room, and pooled memory freed with the last hold.
#include <sys/mman.h>

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = uint64_t{1} << 20;

class RegistryPoolTest : public RegistryTestBase {
 protected:
  // 4 MiB of capacity, 1 MiB arenas, pooling up to 256 KiB.
  void SetUp() override {
    RegistryOptions options = DefaultOptions();
    options.capacity_bytes = 4 * kMiB;
    Reset(std::move(options));
    PooledAllocatorOptions pool;
    pool.arena_size = kMiB;
    ASSERT_THAT(registry_->EnablePooling(pool), IsOk());
  }

  static AllocateSpec Kind(uint64_t size, std::optional<BufferKind> kind) {
    AllocateSpec spec = Spec(size);
    spec.kind = kind;
    return spec;
  }
};

TEST_F(RegistryPoolTest, SmallOwnerOnlyMemfdBuffersArePooled) {
  const ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> small = registry_->Allocate(alice, Spec(100));
  ASSERT_THAT(small, IsOk());
  EXPECT_EQ(small->buffer.kind, BufferKind::kPooled);
  EXPECT_NE(small->buffer.arena_id, 0u);
  EXPECT_EQ(small->buffer.charged_bytes, 128u);  // its size class
  EXPECT_EQ(small->memory->size(), kMiB);        // the fd is the arena's

  const std::pair<AllocateSpec, const char*> dedicated[] = {
      {Spec(100, "", {{ShareRule::Scope::kAll, 0, AccessMode::kReadOnly}}),
       "shared"},
      {Spec(100, "", {}, Backing::kPosix), "posix"},
      {Spec(256 * 1024 + 1), "above the threshold"},
      {Kind(100, BufferKind::kDedicated), "asked for"}};
  for (const auto& [spec, why] : dedicated) {
    absl::StatusOr<Grant> grant = registry_->Allocate(alice, spec);
    ASSERT_THAT(grant, IsOk()) << why;
    EXPECT_EQ(grant->buffer.kind, BufferKind::kDedicated) << why;
    EXPECT_EQ(grant->buffer.offset, 0u) << why;
  }
}

TEST_F(RegistryPoolTest, AskingForPooledWhereItCannotBeIsRefused) {
  const ConnectionId alice = Open(kAlice);
  AllocateSpec shared = Kind(100, BufferKind::kPooled);
  shared.share = {{ShareRule::Scope::kAll, 0, AccessMode::kReadOnly}};
  EXPECT_THAT(registry_->Allocate(alice, shared),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("owner-only memfd")));
  EXPECT_THAT(registry_->Allocate(alice, Kind(kMiB, BufferKind::kPooled)),
              AllOf(StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("pooled buffers hold 1 to")),
                    RefusedBy(Limit::kPooledMaxSize)));
  // A bad request is bad before it is too large: larger than the capacity
  // too, these are still INVALID_ARGUMENT.
  AllocateSpec posix_huge = Kind(64 * kMiB, BufferKind::kPooled);
  posix_huge.backing = Backing::kPosix;
  EXPECT_THAT(registry_->Allocate(alice, posix_huge),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("owner-only memfd")));
  EXPECT_THAT(registry_->Allocate(alice, Kind(64 * kMiB, BufferKind::kPooled)),
              AllOf(StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("pooled buffers hold 1 to")),
                    RefusedBy(Limit::kPooledMaxSize)));
  AllocateSpec bad_name_huge = Spec(64 * kMiB, "no/slash");
  EXPECT_EQ(registry_->Allocate(alice, bad_name_huge).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_->Stats().buffers, 0u);
}

TEST_F(RegistryPoolTest, ArenasAndDedicatedPagesShareOneCapacity) {
  const ConnectionId alice = Open(kAlice);
  const ConnectionId bob = Open(kBob);
  Alloc(alice, 100);  // Alice's arena: 1 MiB committed
  RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.committed_bytes, kMiB);
  EXPECT_EQ(stats.allocated_bytes, 128u);
  EXPECT_EQ(stats.pooled_buffers, 1u);

  ASSERT_THAT(registry_->Allocate(bob, Kind(3 * kMiB, BufferKind::kDedicated)),
              IsOk());
  EXPECT_EQ(registry_->Stats().committed_bytes, 4 * kMiB);
  EXPECT_THAT(registry_->Allocate(bob, Kind(4096, BufferKind::kDedicated)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("in pooled arenas")));
  // Bob's first pooled buffer needs an arena of his own: no room.
  EXPECT_THAT(registry_->Allocate(bob, Kind(100, BufferKind::kPooled)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("arena for uid 2000 does not fit")));
  // Alice's next ones go into her arena, which has room.
  EXPECT_THAT(registry_->Allocate(alice, Kind(100, BufferKind::kPooled)),
              IsOk());
}

TEST_F(RegistryPoolTest, TheDaemonsChoiceFallsBackToDedicated) {
  const ConnectionId alice = Open(kAlice);
  const ConnectionId bob = Open(kBob);
  ASSERT_THAT(registry_->Allocate(
                  bob, Kind(3 * kMiB + kMiB / 2, BufferKind::kDedicated)),
              IsOk());
  // A 1 MiB arena does not fit in the 512 KiB left; one page does.
  absl::StatusOr<Grant> grant = registry_->Allocate(alice, Spec(100));
  ASSERT_THAT(grant, IsOk());
  EXPECT_EQ(grant->buffer.kind, BufferKind::kDedicated);
  EXPECT_EQ(grant->buffer.charged_bytes, PageSize());
  EXPECT_EQ(registry_->Stats().committed_bytes,
            3 * kMiB + kMiB / 2 + PageSize());
}

TEST_F(RegistryPoolTest, UnusedArenasAreRetiredToMakeRoom) {
  const ConnectionId alice = Open(kAlice);
  const ConnectionId bob = Open(kBob);
  const Handle pooled = Alloc(alice, 100);
  ASSERT_THAT(registry_->Release(alice, pooled), IsOkAndHolds(0u));
  EXPECT_EQ(registry_->pool()->Stats().arenas, 1u) << "kept for reuse";
  // Bob needs all 4 MiB: Alice's idle arena goes.
  ASSERT_THAT(registry_->Allocate(bob, Kind(4 * kMiB, BufferKind::kDedicated)),
              IsOk());
  EXPECT_EQ(registry_->pool()->Stats().arenas, 0u);
  EXPECT_EQ(registry_->Stats().committed_bytes, 4 * kMiB);
}

TEST_F(RegistryPoolTest, TheLastHoldFreesTheSlotAndTenantsGetTheirOwnArenas) {
  const ConnectionId alice = Open(kAlice);
  const ConnectionId bob = Open(kBob);
  absl::StatusOr<Grant> a = registry_->Allocate(alice, Spec(5000));
  absl::StatusOr<Grant> b = registry_->Allocate(bob, Spec(5000));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(a->buffer.arena_id, b->buffer.arena_id);
  Alloc(alice, uint64_t{64} << 10);  // a page run
  EXPECT_EQ(registry_->pool()->Stats().live_blocks, 3u);

  CloseResult closed = registry_->CloseConnection(alice);
  EXPECT_EQ(closed.buffers_reclaimed, 2u);
  PooledAllocatorStats pool = registry_->pool()->Stats();
  EXPECT_EQ(pool.live_blocks, 1u);
  ASSERT_THAT(registry_->Release(bob, b->buffer.handle), IsOkAndHolds(0u));
  RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.pooled_buffers, 0u);
  EXPECT_EQ(registry_->pool()->Stats().live_blocks, 0u);
  EXPECT_EQ(stats.committed_bytes, 2 * kMiB) << "arenas stay until scavenged";
  clock_.Advance(absl::Minutes(6));
  EXPECT_EQ(registry_->Scavenge().arenas_released, 2u);
  EXPECT_EQ(registry_->Stats().committed_bytes, 0u);
}

TEST_F(RegistryPoolTest, EnablingTwiceOrWithBadOptionsIsRefused) {
  EXPECT_THAT(
      registry_->EnablePooling({}),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));
  Reset(DefaultOptions());
  PooledAllocatorOptions bad;
  bad.arena_size = 12345;
  EXPECT_THAT(
      registry_->EnablePooling(bad),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("arena size")));
  EXPECT_EQ(registry_->pool(), nullptr);
}

// ResidentBytes walks the table a step at a time, between holds of the
// lock: a dedicated buffer past the first step counts, once its pages are.
TEST_F(RegistryPoolTest, ResidentBytesCountsBuffersPastTheFirstStep) {
  const ConnectionId alice = Open(kAlice);
  for (size_t i = 0; i < Registry::kResidentBytesStep + 10; ++i) {
    ASSERT_THAT(registry_->Allocate(alice, Spec(64)), IsOk());
  }
  constexpr uint64_t kSize = 8192;
  absl::StatusOr<Grant> late =
      registry_->Allocate(alice, Kind(kSize, BufferKind::kDedicated));
  ASSERT_THAT(late, IsOk());
  const uint64_t before = registry_->ResidentBytes();
  void* pages = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                       late->memory->fd(), 0);
  ASSERT_NE(pages, MAP_FAILED);
  std::memset(pages, 1, kSize);
  ::munmap(pages, kSize);
  EXPECT_EQ(registry_->ResidentBytes(), before + kSize);
}

}  // namespace
}  // namespace shmbroker::testing
