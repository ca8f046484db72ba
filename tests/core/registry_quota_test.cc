// Registry: per-uid quotas (max_bytes_per_uid, max_buffers_per_uid). A
// buffer is charged to its owner's uid from its allocation until it is
// reclaimed, however that happens.
#include <vector>

#include "absl/strings/str_format.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"
#include "tests/core/test_support.h"

namespace shmbroker::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

using Code = absl::StatusCode;

class RegistryQuotaTest : public RegistryTestBase {
 protected:
  // Room in the daemon for 64 pages; 8 pages and 3 buffers per uid.
  void SetQuotas(uint64_t bytes, uint64_t buffers) {
    RegistryOptions options = DefaultOptions();
    options.max_bytes_per_uid = bytes;
    options.max_buffers_per_uid = buffers;
    Reset(options);
  }
  void SetUp() override { SetQuotas(Pages(8), 3); }

  TenantQuotas::Usage Used(const Identity& who) {
    return registry_->QuotaUsage(who.uid);
  }
};

TEST_F(RegistryQuotaTest, BuffersPerUidRefusedWithTheUidsCount) {
  ConnectionId alice = Open(kAlice);
  for (int i = 0; i < 3; ++i) Alloc(alice, 1);
  EXPECT_THAT(AllocSpec(alice, 1),
              AllOf(StatusIs(Code::kResourceExhausted,
                             HasSubstr("uid 1000 has 3 of 3 buffers")),
                    RefusedBy(Limit::kMaxBuffersPerUid)));
  EXPECT_EQ(Used(kAlice).buffers, 3u);
  EXPECT_EQ(registry_->Stats().buffers, 3u);
}

TEST_F(RegistryQuotaTest, BytesPerUidRefusedWithTheUidsUsage) {
  ConnectionId alice = Open(kAlice);
  Alloc(alice, Pages(5));
  EXPECT_THAT(
      AllocSpec(alice, Pages(3) + 1),
      AllOf(StatusIs(Code::kResourceExhausted,
                     HasSubstr(absl::StrFormat("uid 1000 has %d of %d bytes",
                                               Pages(5), Pages(8)))),
            RefusedBy(Limit::kMaxBytesPerUid)));
  // Exactly up to the quota is fine.
  EXPECT_THAT(AllocSpec(alice, Pages(3)), IsOk());
  EXPECT_EQ(Used(kAlice).bytes, Pages(8));
}

TEST_F(RegistryQuotaTest, AnotherUidIsServedWhileOneIsAtItsQuota) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Alloc(alice, Pages(8));
  EXPECT_THAT(AllocSpec(alice, 1), RefusedBy(Limit::kMaxBytesPerUid));
  // A second connection of the same uid shares its quota.
  EXPECT_THAT(AllocSpec(Open(kAlice2), 1), RefusedBy(Limit::kMaxBytesPerUid));
  for (int i = 0; i < 3; ++i) Alloc(bob, Pages(2));
  EXPECT_EQ(Used(kBob).buffers, 3u);
  EXPECT_EQ(Used(kAlice).bytes, Pages(8));
}

TEST_F(RegistryQuotaTest, ReleaseCreditsTheOwner) {
  ConnectionId alice = Open(kAlice);
  Handle a = Alloc(alice, Pages(8));
  ASSERT_THAT(registry_->Release(alice, a), IsOk());
  EXPECT_EQ(Used(kAlice).bytes, 0u);
  EXPECT_EQ(Used(kAlice).buffers, 0u);
  EXPECT_THAT(AllocSpec(alice, Pages(8)), IsOk());
}

TEST_F(RegistryQuotaTest, SharedBufferStaysChargedToItsOwnerUntilReclaimed) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Handle shared = Alloc(alice, Pages(8), "shared", {kAllReadWrite});
  ASSERT_THAT(registry_->Attach(bob, BufferRef::ByHandle(shared),
                                AccessRequest::kReadWrite),
              IsOk());
  EXPECT_EQ(Used(kBob).bytes, 0u);
  // The owner lets go; the other uid's hold keeps it, still on Alice.
  ASSERT_THAT(registry_->Release(alice, shared), IsOk());
  EXPECT_EQ(Used(kAlice).bytes, Pages(8));
  EXPECT_THAT(AllocSpec(alice, 1), RefusedBy(Limit::kMaxBytesPerUid));
  ASSERT_THAT(registry_->Release(bob, shared), IsOk());
  EXPECT_EQ(Used(kAlice).bytes, 0u);
  EXPECT_THAT(AllocSpec(alice, 1), IsOk());
}

TEST_F(RegistryQuotaTest, OwnerDeathCreditsItsBuffers) {
  ConnectionId alice = Open(kAlice);
  Alloc(alice, Pages(4));
  Alloc(alice, Pages(4));
  registry_->CloseConnection(alice, ReclaimReason::kClientClosed);
  EXPECT_EQ(Used(kAlice).bytes, 0u);
  EXPECT_EQ(Used(kAlice).buffers, 0u);
  EXPECT_THAT(AllocSpec(Open(kAlice2), Pages(8)), IsOk());
}

TEST_F(RegistryQuotaTest, LeaseExpiryCreditsItsBuffers) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<LeaseInfo> lease =
      registry_->GrantLease(alice, absl::Seconds(5), /*detached=*/true);
  ASSERT_THAT(lease, IsOk());
  AllocateSpec spec = Spec(Pages(8));
  spec.lease = lease->id;
  ASSERT_THAT(registry_->Allocate(alice, spec), IsOk());
  // The detached lease outlives its connection, and so does the charge.
  registry_->CloseConnection(alice, ReclaimReason::kClientClosed);
  EXPECT_EQ(Used(kAlice).bytes, Pages(8));
  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(registry_->ExpireLeases(100).buffers_reclaimed, 1u);
  EXPECT_EQ(Used(kAlice).bytes, 0u);
  EXPECT_EQ(Used(kAlice).buffers, 0u);
}

TEST_F(RegistryQuotaTest, RefusedByTheDaemonChargesNothing) {
  // The capacity refuses after the quota passed: nothing stays charged.
  RegistryOptions options = DefaultOptions();
  options.max_bytes_per_uid = options.capacity_bytes;
  Reset(options);
  ConnectionId bob = Open(kBob);
  Alloc(bob, Pages(60));
  ConnectionId alice = Open(kAlice);
  EXPECT_THAT(AllocSpec(alice, Pages(5)), RefusedBy(Limit::kCapacity));
  EXPECT_EQ(Used(kAlice).bytes, 0u);
  EXPECT_EQ(Used(kAlice).buffers, 0u);
  // So does a taken name.
  Alloc(alice, 1, "taken");
  EXPECT_THAT(AllocSpec(alice, 1, "taken"),
              StatusIs(Code::kAlreadyExists, HasSubstr("taken")));
  EXPECT_EQ(Used(kAlice).buffers, 1u);
}

TEST_F(RegistryQuotaTest, PooledBufferIsChargedItsSlot) {
  PooledAllocatorOptions pool;
  pool.arena_size = 1 << 20;
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = 16 << 20;
  options.max_bytes_per_uid = Pages(2);
  options.max_buffers_per_uid = 1000;
  Reset(options);
  ASSERT_THAT(registry_->EnablePooling(pool), IsOk());
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<Grant> small = AllocSpec(alice, 100);
  ASSERT_THAT(small, IsOk());
  ASSERT_EQ(small->buffer.kind, BufferKind::kPooled);
  // Its slot, not the arena (which the capacity counts) nor a page.
  EXPECT_EQ(Used(kAlice).bytes, small->buffer.charged_bytes);
  EXPECT_LT(small->buffer.charged_bytes, PageSize());
  // Many small ones fit where whole pages would not.
  std::vector<Handle> more;
  uint64_t charged = small->buffer.charged_bytes;
  while (charged + small->buffer.charged_bytes <= Pages(1)) {
    absl::StatusOr<Grant> next = AllocSpec(alice, 100);
    ASSERT_THAT(next, IsOk());
    charged += next->buffer.charged_bytes;
    more.push_back(next->buffer.handle);
  }
  EXPECT_EQ(Used(kAlice).bytes, charged);
  EXPECT_EQ(Used(kAlice).buffers, more.size() + 1);
  // A request is checked at its size in whole pages before its slot is
  // known: a page and more is refused.
  EXPECT_THAT(AllocSpec(alice, Pages(1) + 1),
              RefusedBy(Limit::kMaxBytesPerUid));
  for (Handle h : more) ASSERT_THAT(registry_->Release(alice, h), IsOk());
  ASSERT_THAT(registry_->Release(alice, small->buffer.handle), IsOk());
  EXPECT_EQ(Used(kAlice).bytes, 0u);
  EXPECT_EQ(Used(kAlice).buffers, 0u);
}

TEST_F(RegistryQuotaTest, AQuotaAsLargeAsTheDaemonsLimitIsNone) {
  SetQuotas(Pages(64), 100);
  ConnectionId alice = Open(kAlice);
  Alloc(alice, Pages(60));
  // The capacity refuses, and is named, not the quota.
  EXPECT_THAT(AllocSpec(alice, Pages(5)), RefusedBy(Limit::kCapacity));
}

TEST_F(RegistryQuotaTest, AUidsOwnQuotasReplaceTheDefaultsAndChangeLive) {
  OwnQuotas own;
  own[kAlice.uid] = UidQuota{Pages(2), 1};
  registry_->SetOwnQuotas(own);
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Alloc(alice, 1);
  EXPECT_THAT(AllocSpec(alice, 1),
              AllOf(StatusIs(Code::kResourceExhausted,
                             HasSubstr("uid 1000 has 1 of 1 buffers (its own "
                                       "quota)")),
                    RefusedBy(Limit::kMaxBuffersPerUid)));
  // Bob has the defaults.
  for (int i = 0; i < 3; ++i) Alloc(bob, 1);
  EXPECT_THAT(AllocSpec(bob, 1), RefusedBy(Limit::kMaxBuffersPerUid));

  // Raised: Alice has room up to her new quota of bytes.
  own[kAlice.uid] = UidQuota{Pages(3), 10};
  registry_->SetOwnQuotas(own);
  EXPECT_EQ(registry_->QuotaFor(kAlice.uid).max_buffers, 10u);
  Alloc(alice, Pages(2));
  EXPECT_THAT(
      AllocSpec(alice, Pages(1)),
      AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("(its own quota)")),
            RefusedBy(Limit::kMaxBytesPerUid)));

  // Lowered below her usage: she keeps what she has and gets no more.
  own[kAlice.uid] = UidQuota{Pages(1), 1};
  registry_->SetOwnQuotas(own);
  EXPECT_EQ(Used(kAlice).buffers, 2u);
  EXPECT_THAT(AllocSpec(alice, 1), RefusedBy(Limit::kMaxBuffersPerUid));

  // At the daemon's own limits, hers are none; taken away, the defaults.
  own[kAlice.uid] = UidQuota{Pages(64), registry_->options().max_buffers};
  registry_->SetOwnQuotas(own);
  EXPECT_EQ(registry_->QuotaFor(kAlice.uid).max_bytes, 0u);
  EXPECT_EQ(registry_->QuotaFor(kAlice.uid).max_buffers, 0u);
  registry_->SetOwnQuotas({});
  EXPECT_EQ(registry_->QuotaFor(kAlice.uid).max_buffers, 3u);
}

TEST_F(RegistryQuotaTest, ZeroMeansNoPerUidLimit) {
  SetQuotas(0, 0);
  ConnectionId alice = Open(kAlice);
  for (int i = 0; i < 8; ++i) Alloc(alice, Pages(8));
  EXPECT_EQ(Used(kAlice).buffers, 8u);
  EXPECT_THAT(AllocSpec(alice, 1), RefusedBy(Limit::kCapacity));
}

}  // namespace
}  // namespace shmbroker::testing
