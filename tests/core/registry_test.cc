// Registry: holds and refcounts, reclamation, capacity, limits and errors.
#include "core/registry.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::kAlice;
using ::shmbroker::testing::kAlice2;
using ::shmbroker::testing::kBob;
using ::shmbroker::testing::RefusedBy;
using ::shmbroker::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Code = absl::StatusCode;

class RegistryTest : public ::shmbroker::testing::RegistryTestBase {};

TEST_F(RegistryTest, AllocateGivesOneReadWriteHoldToTheCaller) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> grant = AllocSpec(alice, 5000, "frame");
  ASSERT_THAT(grant, IsOk());
  EXPECT_NE(grant->buffer.handle, 0u);
  EXPECT_EQ(grant->buffer.name, "frame");
  EXPECT_EQ(grant->buffer.size, 5000u);
  EXPECT_EQ(grant->buffer.holders, 1u);
  EXPECT_EQ(grant->buffer.owner, kAlice);
  EXPECT_EQ(grant->buffer.backing, Backing::kMemfd);
  EXPECT_EQ(grant->mode, AccessMode::kReadWrite);
  ASSERT_NE(grant->memory, nullptr);
  EXPECT_EQ(grant->memory->size(), 5000u);
  EXPECT_FALSE(grant->read_only_fd.valid());
  EXPECT_EQ(grant->fd_to_send(), grant->memory->fd());

  RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.buffers, 1u);
  EXPECT_EQ(stats.holds, 1u);
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.allocated_bytes, Pages(2));
  EXPECT_EQ(stats.capacity_bytes, Pages(64));
}

TEST_F(RegistryTest, AttachAddsHoldsAndReleaseReturnsHoldersLeft) {
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(kAlice2);
  Handle h = Alloc(alice, 100);
  absl::StatusOr<Grant> second = registry_->Attach(
      alice2, BufferRef::ByHandle(h), AccessRequest::kBestAllowed);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->buffer.holders, 2u);
  EXPECT_EQ(second->mode, AccessMode::kReadWrite);
  // The same memory object, not a copy.
  absl::StatusOr<Grant> third = registry_->Attach(alice, BufferRef::ByHandle(h),
                                                  AccessRequest::kBestAllowed);
  ASSERT_THAT(third, IsOk());
  EXPECT_EQ(third->memory, second->memory);
  EXPECT_EQ(third->buffer.holders, 3u);
  EXPECT_EQ(registry_->Stats().holds, 3u);

  EXPECT_EQ(registry_->Release(alice, h).value(), 2u);
  EXPECT_EQ(registry_->Release(alice2, h).value(), 1u);
  EXPECT_EQ(Holders(h), 1);
  EXPECT_EQ(registry_->Release(alice, h).value(), 0u);
  EXPECT_EQ(Holders(h), -1);
}

TEST_F(RegistryTest, AttachByNameReachesTheSameBufferAsByHandle) {
  ConnectionId alice = Open(kAlice);
  Handle h = Alloc(alice, 100, "shared-input");
  absl::StatusOr<Grant> by_name = registry_->Attach(
      alice, BufferRef::ByName("shared-input"), AccessRequest::kBestAllowed);
  ASSERT_THAT(by_name, IsOk());
  EXPECT_EQ(by_name->buffer.handle, h);
  absl::StatusOr<Grant> by_handle = registry_->Attach(
      alice, BufferRef::ByHandle(h), AccessRequest::kBestAllowed);
  ASSERT_THAT(by_handle, IsOk());
  EXPECT_EQ(by_handle->memory, by_name->memory);
  EXPECT_EQ(Holders(h), 3);
}

TEST_F(RegistryTest, LastReleaseReclaimsBytesBufferAndMemory) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> grant = AllocSpec(alice, 3 * 4096 + 1);
  ASSERT_THAT(grant, IsOk());
  const Handle h = grant->buffer.handle;
  std::weak_ptr<const MemoryObject> memory = grant->memory;
  grant->memory.reset();
  ASSERT_FALSE(memory.expired());  // the registry keeps it alive

  ASSERT_EQ(registry_->Release(alice, h).value(), 0u);
  EXPECT_TRUE(memory.expired());
  RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.buffers, 0u);
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.holds, 0u);
  EXPECT_THAT(registry_->Describe(kAlice, BufferRef::ByHandle(h)),
              StatusIs(Code::kNotFound, HasSubstr("no such buffer")));
  EXPECT_THAT(registry_->Release(alice, h), StatusIs(Code::kNotFound, _));
}

TEST_F(RegistryTest, CloseClientDropsAllItsHoldsAndReclaimsOnlyUnheldBuffers) {
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(kAlice2);
  Handle a = Alloc(alice, 1);                  // held by alice 3 times
  Handle b = Alloc(alice, Pages(2));           // also held by alice2
  Handle c = Alloc(alice, Pages(3) + 1, "c");  // alice only
  Handle d = Alloc(alice2, 1);                 // alice2 only
  for (int i = 0; i < 2; ++i) {
    ASSERT_THAT(registry_->Attach(alice, BufferRef::ByHandle(a),
                                  AccessRequest::kBestAllowed),
                IsOk());
  }
  ASSERT_THAT(registry_->Attach(alice2, BufferRef::ByHandle(b),
                                AccessRequest::kBestAllowed),
              IsOk());

  CloseResult closed = registry_->CloseConnection(alice);
  EXPECT_EQ(closed.holds_dropped, 5u);  // 3 on a, 1 on b, 1 on c
  EXPECT_EQ(closed.buffers_reclaimed, 2u);
  EXPECT_EQ(closed.bytes_reclaimed, Pages(1) + Pages(4));
  EXPECT_EQ(Holders(a), -1);
  EXPECT_EQ(Holders(b), 1);
  EXPECT_EQ(Holders(c), -1);
  EXPECT_EQ(Holders(d), 1);
  RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.buffers, 2u);
  EXPECT_EQ(stats.holds, 2u);
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.allocated_bytes, Pages(3));
  EXPECT_THAT(AllocSpec(alice2, 1, "c"), IsOk());  // the name is free again

  // Closing twice, or an id never opened, is a no-op.
  CloseResult again = registry_->CloseConnection(alice);
  EXPECT_EQ(
      again.holds_dropped + again.buffers_reclaimed + again.bytes_reclaimed,
      0u);
  EXPECT_EQ(registry_->CloseConnection(987654).holds_dropped, 0u);
  EXPECT_EQ(registry_->Stats().buffers, 3u);
}

TEST_F(RegistryTest, ChargesWholePages) {
  ConnectionId alice = Open(kAlice);
  struct Case {
    uint64_t size;
    uint64_t charged;
  };
  uint64_t total = 0;
  for (const Case& c :
       {Case{1, Pages(1)}, Case{Pages(1), Pages(1)},
        Case{Pages(1) + 1, Pages(2)}, Case{Pages(5) - 1, Pages(5)}}) {
    absl::StatusOr<Grant> grant = AllocSpec(alice, c.size);
    ASSERT_THAT(grant, IsOk());
    EXPECT_EQ(grant->buffer.size, c.size);
    EXPECT_EQ(grant->buffer.charged_bytes, c.charged) << "size " << c.size;
    total += c.charged;
  }
  EXPECT_EQ(registry_->Stats().allocated_bytes, total);
}

TEST_F(RegistryTest, SingleRequestLargerThanCapacityIsResourceExhausted) {
  ConnectionId alice = Open(kAlice);
  EXPECT_THAT(AllocSpec(alice, Pages(64) + 1),
              StatusIs(Code::kResourceExhausted, HasSubstr("capacity")));
  EXPECT_THAT(AllocSpec(alice, uint64_t{1} << 62),
              StatusIs(Code::kResourceExhausted, HasSubstr("capacity")));
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
  EXPECT_THAT(AllocSpec(alice, Pages(64)), IsOk());  // exactly the capacity
}

TEST_F(RegistryTest, SizeThatFitsOnlyBeforeRoundingIsResourceExhausted) {
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = Pages(2) + 100;  // not a whole number of pages
  Reset(options);
  ConnectionId alice = Open(kAlice);
  EXPECT_THAT(AllocSpec(alice, Pages(2) + 50),
              StatusIs(Code::kResourceExhausted, HasSubstr("capacity")));
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
}

TEST_F(RegistryTest, SumOverCapacityIsResourceExhaustedUntilBytesComeBack) {
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = Pages(4);
  Reset(options);
  ConnectionId alice = Open(kAlice);
  Handle big = Alloc(alice, Pages(3));
  EXPECT_THAT(AllocSpec(alice, Pages(1) + 1),
              StatusIs(Code::kResourceExhausted,
                       AllOf(HasSubstr("capacity"), HasSubstr("in use"))));
  Handle last = Alloc(alice, 1);  // fills the last page exactly
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(4));
  EXPECT_THAT(AllocSpec(alice, 1),
              StatusIs(Code::kResourceExhausted, HasSubstr("capacity")));
  EXPECT_EQ(registry_->Stats().buffers, 2u);

  // Released capacity is usable again at once.
  ASSERT_EQ(registry_->Release(alice, big).value(), 0u);
  EXPECT_THAT(AllocSpec(alice, Pages(3)), IsOk());
  ASSERT_EQ(registry_->Release(alice, last).value(), 0u);
  EXPECT_THAT(AllocSpec(alice, 1), IsOk());
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(4));
}

TEST_F(RegistryTest, SizeZeroIsInvalidArgument) {
  ConnectionId alice = Open(kAlice);
  EXPECT_THAT(AllocSpec(alice, 0),
              StatusIs(Code::kInvalidArgument, HasSubstr("size")));
  EXPECT_EQ(registry_->Stats().buffers, 0u);
}

TEST_F(RegistryTest, TakenNameIsAlreadyExistsAndFreeAgainAfterReclaim) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Handle first = Alloc(alice, 10, "model-weights");
  EXPECT_THAT(AllocSpec(bob, 10, "model-weights"),
              StatusIs(Code::kAlreadyExists,
                       AllOf(HasSubstr("model-weights"), HasSubstr("taken"))));
  EXPECT_EQ(registry_->Stats().buffers, 1u);
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(1));

  ASSERT_EQ(registry_->Release(alice, first).value(), 0u);
  absl::StatusOr<Grant> again = AllocSpec(bob, 10, "model-weights");
  ASSERT_THAT(again, IsOk());
  // A stale handle must never name the new buffer.
  EXPECT_NE(again->buffer.handle, first);
  EXPECT_EQ(
      registry_->Describe(kBob, BufferRef::ByName("model-weights"))->owner,
      kBob);
}

TEST_F(RegistryTest, BadNamesAreInvalidArgument) {
  ConnectionId alice = Open(kAlice);
  EXPECT_THAT(AllocSpec(alice, 10, "../etc/passwd"),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad name")));
  EXPECT_THAT(registry_->Attach(alice, BufferRef::ByName("a b"),
                                AccessRequest::kBestAllowed),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad name")));
  EXPECT_THAT(registry_->Describe(kAlice, BufferRef::ByName("")),
              StatusIs(Code::kInvalidArgument, HasSubstr("empty")));
  EXPECT_EQ(registry_->Stats().buffers, 0u);
}

TEST_F(RegistryTest, BadShareRulesAreInvalidArgument) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> grant = registry_->Allocate(
      alice, Spec(1, "",
                  {ShareRule{.scope = ShareRule::Scope::kAll,
                             .id = 5,
                             .mode = AccessMode::kReadOnly}}));
  EXPECT_THAT(grant, StatusIs(Code::kInvalidArgument, HasSubstr("everyone")));
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
}

TEST_F(RegistryTest, UnknownHandleOrNameIsNotFound) {
  ConnectionId alice = Open(kAlice);
  Alloc(alice, 1, "exists");
  EXPECT_THAT(registry_->Attach(alice, BufferRef::ByHandle(424242),
                                AccessRequest::kBestAllowed),
              StatusIs(Code::kNotFound, HasSubstr("handle 424242")));
  EXPECT_THAT(registry_->Attach(alice, BufferRef::ByName("missing"),
                                AccessRequest::kBestAllowed),
              StatusIs(Code::kNotFound, HasSubstr("\"missing\"")));
  EXPECT_THAT(registry_->Describe(kAlice, BufferRef::ByHandle(424242)),
              StatusIs(Code::kNotFound, HasSubstr("no such buffer")));
  EXPECT_EQ(registry_->Stats().holds, 1u);
}

TEST_F(RegistryTest, ReleasingAHoldOfAnotherConnectionIsDenied) {
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(kAlice2);  // same uid: ownership is not a hold
  Handle h = Alloc(alice, 1);
  EXPECT_THAT(
      registry_->Release(alice2, h),
      StatusIs(Code::kPermissionDenied, HasSubstr("holds no reference")));
  EXPECT_EQ(Holders(h), 1);
  EXPECT_THAT(registry_->Release(alice2, 424242),
              StatusIs(Code::kNotFound, HasSubstr("no such buffer")));
}

TEST_F(RegistryTest, ClosedOrUnknownClientIsFailedPrecondition) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Handle h = Alloc(bob, 1, "bobs");
  registry_->CloseConnection(alice);
  for (ConnectionId gone : {alice, ConnectionId{777777}}) {
    EXPECT_THAT(AllocSpec(gone, 1),
                StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
    EXPECT_THAT(registry_->Attach(gone, BufferRef::ByHandle(h),
                                  AccessRequest::kBestAllowed),
                StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
    EXPECT_THAT(registry_->Release(gone, h),
                StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
  }
  EXPECT_EQ(Holders(h), 1);
  EXPECT_EQ(registry_->Stats().clients, 1u);
}

TEST_F(RegistryTest, MaxClientsPerUidIsResourceExhaustedPerUid) {
  RegistryOptions options = DefaultOptions();
  options.max_connections_per_uid = 2;
  Reset(options);
  ConnectionId first = Open(kAlice);
  Open(kAlice2);
  EXPECT_THAT(registry_->OpenConnection(kAlice),
              AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("uid 1000")),
                    RefusedBy(Limit::kMaxConnectionsPerUid)));
  EXPECT_THAT(registry_->OpenConnection(kBob),
              IsOk());  // other uids unaffected
  registry_->CloseConnection(first);
  EXPECT_THAT(registry_->OpenConnection(kAlice), IsOk());
  EXPECT_EQ(registry_->Stats().clients, 3u);
}

TEST_F(RegistryTest, ZeroMaxClientsPerUidRefusesEveryConnection) {
  RegistryOptions options = DefaultOptions();
  options.max_connections_per_uid = 0;
  Reset(options);
  EXPECT_THAT(
      registry_->OpenConnection(kAlice),
      AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("already has 0")),
            RefusedBy(Limit::kMaxConnectionsPerUid)));
  EXPECT_EQ(registry_->Stats().clients, 0u);
}

TEST_F(RegistryTest, MaxHoldsPerLeaseIsResourceExhausted) {
  RegistryOptions options = DefaultOptions();
  options.leases.max_holds_per_lease = 3;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(kAlice2);
  Handle h = Alloc(alice, 1);
  Alloc(alice, 1);
  ASSERT_THAT(registry_->Attach(alice, BufferRef::ByHandle(h),
                                AccessRequest::kBestAllowed),
              IsOk());
  EXPECT_THAT(registry_->Attach(alice, BufferRef::ByHandle(h),
                                AccessRequest::kBestAllowed),
              AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("3 holds")),
                    RefusedBy(Limit::kMaxHoldsPerLease)));
  EXPECT_THAT(AllocSpec(alice, 1),
              StatusIs(Code::kResourceExhausted, HasSubstr("3 holds")));
  EXPECT_EQ(Holders(h), 2);
  EXPECT_EQ(registry_->Stats().buffers, 2u);
  // The limit is per lease, and a release makes room again.
  EXPECT_THAT(registry_->Attach(alice2, BufferRef::ByHandle(h),
                                AccessRequest::kBestAllowed),
              IsOk());
  ASSERT_THAT(registry_->Release(alice, h), IsOk());
  EXPECT_THAT(registry_->Attach(alice, BufferRef::ByHandle(h),
                                AccessRequest::kBestAllowed),
              IsOk());
}

TEST_F(RegistryTest, MaxBuffersIsResourceExhausted) {
  RegistryOptions options = DefaultOptions();
  options.max_buffers = 2;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  Handle first = Alloc(alice, 1);
  Alloc(alice, 1);
  EXPECT_THAT(
      AllocSpec(alice, 1),
      AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("too many buffers")),
            RefusedBy(Limit::kMaxBuffers)));
  ASSERT_EQ(registry_->Release(alice, first).value(), 0u);
  EXPECT_THAT(AllocSpec(alice, 1), IsOk());
  EXPECT_EQ(registry_->Stats().buffers, 2u);
}

}  // namespace
}  // namespace shmbroker
