// Registry: back-pressure. An Allocate that may wait for room becomes a
// waiter when the capacity, the buffer limit or its uid's quota refuses it,
// and is handed its grant the moment room comes back, first come, first
// served; a waiter refused by its own uid's quota does not hold up the
// others. Its deadline, its connection closing and cancelling end it.
#include <optional>
#include <variant>

#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"
#include "tests/core/test_support.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

using Code = absl::StatusCode;

// What a waiter was finally handed, if anything yet.
struct Outcome {
  std::optional<absl::StatusOr<Grant>> got;
  Registry::WaitDone Done() {
    return [this](absl::StatusOr<Grant> grant) { got = std::move(grant); };
  }
};

class RegistryRoomTest : public RegistryTestBase {
 protected:
  // 8 pages in all; 6 for any one uid.
  void SetUp() override {
    RegistryOptions options = DefaultOptions();
    options.capacity_bytes = Pages(8);
    options.max_bytes_per_uid = Pages(6);
    Reset(options);
  }

  // Waits (the test asserts it did) and returns the waiter's id.
  WaiterId Wait(ConnectionId client, uint64_t size, Outcome& outcome,
                absl::Duration for_how_long = absl::Seconds(10)) {
    AllocateSpec spec = Spec(size);
    spec.kind = BufferKind::kDedicated;
    absl::StatusOr<std::variant<Grant, WaiterId>> now =
        registry_->AllocateOrWait(client, spec, clock_.Now() + for_how_long,
                                  outcome.Done());
    EXPECT_THAT(now, IsOk());
    EXPECT_TRUE(now.ok() && std::holds_alternative<WaiterId>(*now));
    return now.ok() && std::holds_alternative<WaiterId>(*now)
               ? std::get<WaiterId>(*now)
               : 0;
  }

  void Free(ConnectionId client, Handle handle) {
    EXPECT_THAT(registry_->Release(client, BufferRef::ByHandle(handle), 0),
                IsOk());
  }
};

TEST_F(RegistryRoomTest, WaitersAreServedInOrderWhenRoomComesBack) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  const Handle a = Alloc(alice, Pages(4));
  const Handle b = Alloc(bob, Pages(4));
  Outcome first, second;
  Wait(alice, Pages(2), first);
  Wait(bob, Pages(2), second);
  EXPECT_EQ(registry_->Stats().buffers, 2u);

  Free(alice, a);  // 4 pages: room for both, in order
  ASSERT_TRUE(first.got.has_value());
  ASSERT_THAT(*first.got, IsOk());
  EXPECT_EQ((*first.got)->buffer.size, Pages(2));
  ASSERT_TRUE(second.got.has_value());
  EXPECT_THAT(*second.got, IsOk());
  Free(bob, b);
}

TEST_F(RegistryRoomTest, AWaiterForTheCapacityHoldsUpTheLineBehindIt) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  ConnectionId root = Open(kRootId);
  const Handle a = Alloc(alice, Pages(2));
  const Handle b1 = Alloc(bob, Pages(2));
  const Handle b2 = Alloc(bob, Pages(4));
  Outcome big, small;
  Wait(alice, Pages(3), big);  // within her quota: the capacity refuses
  Wait(root, Pages(1), small);

  // Two pages back: enough for the later, smaller request, but the earlier
  // one comes first and the later may not take its room.
  Free(bob, b1);
  EXPECT_FALSE(big.got.has_value());
  EXPECT_FALSE(small.got.has_value());
  Free(bob, b2);
  ASSERT_TRUE(big.got.has_value());
  EXPECT_THAT(*big.got, IsOk());
  ASSERT_TRUE(small.got.has_value());
  EXPECT_THAT(*small.got, IsOk());
  Free(alice, a);
}

TEST_F(RegistryRoomTest, AWaiterAtItsOwnQuotaDoesNotHoldUpOthers) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  const Handle a = Alloc(alice, Pages(6));  // Alice's whole quota
  const Handle b = Alloc(bob, Pages(2));
  Outcome alices, bobs;
  Wait(alice, Pages(1), alices);  // her quota refuses
  Wait(bob, Pages(1), bobs);      // the capacity refuses

  Free(bob, b);  // room in the capacity, none in Alice's quota
  EXPECT_FALSE(alices.got.has_value());
  ASSERT_TRUE(bobs.got.has_value());
  EXPECT_THAT(*bobs.got, IsOk());

  Free(alice, a);
  ASSERT_TRUE(alices.got.has_value());
  EXPECT_THAT(*alices.got, IsOk());
}

TEST_F(RegistryRoomTest, ADeadlineAClosedConnectionOrACancelEndsAWait) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Alloc(alice, Pages(6));
  const Handle b = Alloc(bob, Pages(2));
  Outcome timed, closed, cancelled;
  Wait(alice, Pages(1), timed, absl::Seconds(1));
  const ConnectionId carol = Open(kAlice2);
  Wait(carol, Pages(1), closed);
  const WaiterId gone = Wait(bob, Pages(1), cancelled);

  clock_.Advance(absl::Seconds(2));
  registry_->ExpireWaiters();
  ASSERT_TRUE(timed.got.has_value());
  EXPECT_THAT(*timed.got,
              StatusIs(Code::kDeadlineExceeded,
                       HasSubstr("deadline passed waiting for room for 4096 "
                                 "bytes: over the per-uid quota")));
  // It carries the limit it waited on, for the edge to name its flag.
  EXPECT_EQ(LimitOf(timed.got->status()), Limit::kMaxBytesPerUid);

  registry_->CloseConnection(carol, ReclaimReason::kClientClosed);
  ASSERT_TRUE(closed.got.has_value());
  EXPECT_THAT(*closed.got, StatusIs(Code::kFailedPrecondition, ::testing::_));

  EXPECT_TRUE(registry_->CancelAllocateWait(gone));
  EXPECT_FALSE(registry_->CancelAllocateWait(gone));
  Free(bob, b);
  EXPECT_FALSE(cancelled.got.has_value());
  EXPECT_EQ(registry_->Stats().buffers, 1u);
}

TEST_F(RegistryRoomTest, WhatNoRoomCouldMendIsRefusedAtOnce) {
  ConnectionId alice = Open(kAlice);
  Outcome never;
  AllocateSpec spec = Spec(Pages(7));  // over her quota of 6 pages
  spec.kind = BufferKind::kDedicated;
  auto over_quota = registry_->AllocateOrWait(
      alice, spec, clock_.Now() + absl::Seconds(10), never.Done());
  EXPECT_THAT(over_quota, StatusIs(Code::kResourceExhausted, ::testing::_));
  spec = Spec(0);
  auto bad = registry_->AllocateOrWait(
      alice, spec, clock_.Now() + absl::Seconds(10), never.Done());
  EXPECT_THAT(bad, StatusIs(Code::kInvalidArgument, ::testing::_));
  EXPECT_FALSE(never.got.has_value());
}

}  // namespace
}  // namespace shmbroker::testing
