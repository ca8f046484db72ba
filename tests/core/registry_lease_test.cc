// Registry leases on a fake clock: grant and clamp, renewal, expiry order,
// revocation, detached leases outliving their connection, default-lease
// expiry ending the connection, limits, and bounded sweeps.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::IsOkAndHolds;
using ::shmbroker::testing::kAlice;
using ::shmbroker::testing::kAlice2;
using ::shmbroker::testing::kBob;
using ::shmbroker::testing::kRootId;
using ::shmbroker::testing::RefusedBy;
using ::shmbroker::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using Code = absl::StatusCode;

class RegistryLeaseTest : public testing::RegistryTestBase {
 protected:
  LeaseId GrantOk(ConnectionId client, absl::Duration ttl,
                  bool detached = false) {
    absl::StatusOr<LeaseInfo> lease =
        registry_->GrantLease(client, ttl, detached);
    EXPECT_THAT(lease, IsOk());
    return lease.ok() ? lease->id : 0;
  }
  Handle AllocUnder(ConnectionId client, LeaseId lease, uint64_t size,
                    std::string name = "") {
    AllocateSpec spec = Spec(size, std::move(name));
    spec.lease = lease;
    absl::StatusOr<Grant> grant = registry_->Allocate(client, spec);
    EXPECT_THAT(grant, IsOk());
    if (grant.ok()) {
      EXPECT_EQ(grant->lease, lease);
    }
    return grant.ok() ? grant->buffer.handle : 0;
  }
  LeaseId DefaultOf(ConnectionId client) {
    absl::StatusOr<LeaseInfo> lease = registry_->DefaultLease(client);
    EXPECT_THAT(lease, IsOk());
    return lease.ok() ? lease->id : 0;
  }
};

TEST_F(RegistryLeaseTest, EveryConnectionGetsADefaultLeaseThatHoldsItsBuffers) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<LeaseInfo> lease = registry_->DefaultLease(alice);
  ASSERT_THAT(lease, IsOk());
  EXPECT_TRUE(lease->connection_default);
  EXPECT_FALSE(lease->detached);
  EXPECT_EQ(lease->granted_ttl, absl::Seconds(10));
  EXPECT_EQ(lease->deadline, kStart + absl::Seconds(10));
  absl::StatusOr<Grant> grant = AllocSpec(alice, 1);
  ASSERT_THAT(grant, IsOk());
  EXPECT_EQ(grant->lease, lease->id);
  absl::StatusOr<LeaseDetail> ttl =
      registry_->LeaseTimeToLive(kAlice, alice, 0);
  ASSERT_THAT(ttl, IsOk());
  EXPECT_EQ(ttl->info.id, lease->id);
  EXPECT_THAT(ttl->holds, ElementsAre(Pair(grant->buffer.handle, 1u)));
}

TEST_F(RegistryLeaseTest, GrantClampsTheTtl) {
  ConnectionId alice = Open(kAlice);
  EXPECT_EQ(
      registry_->GrantLease(alice, absl::Milliseconds(5), false)->granted_ttl,
      absl::Seconds(1));
  EXPECT_EQ(registry_->GrantLease(alice, absl::Hours(30), false)->granted_ttl,
            absl::Hours(1));
  EXPECT_EQ(
      registry_->GrantLease(alice, absl::ZeroDuration(), false)->granted_ttl,
      absl::Seconds(10));
  EXPECT_THAT(registry_->GrantLease(alice, absl::Seconds(-3), false),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad ttl")));
  EXPECT_THAT(registry_->GrantLease(987, absl::Seconds(5), false),
              StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
}

TEST_F(RegistryLeaseTest, ExpiryDropsHoldsAndReclaimsInDeadlineOrder) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  LeaseId slow = GrantOk(alice, absl::Seconds(30));
  LeaseId fast = GrantOk(alice, absl::Seconds(5));
  Handle a = AllocUnder(alice, slow, Pages(1));
  Handle b = AllocUnder(alice, fast, Pages(2));
  Handle shared = AllocUnder(alice, fast, 1, "shared");
  // Keep the other connections alive throughout.
  auto renew_defaults = [&] {
    ASSERT_THAT(registry_->KeepAlive(alice, 0), IsOk());
    ASSERT_THAT(registry_->KeepAlive(bob, 0), IsOk());
  };

  clock_.Advance(absl::Seconds(4));
  renew_defaults();
  EXPECT_EQ(registry_->ExpireLeases(100).leases_ended, 0u);
  EXPECT_EQ(registry_->NextLeaseDeadline(), kStart + absl::Seconds(5));

  clock_.Advance(absl::Seconds(2));  // t = 6 s: `fast` is due
  CloseResult expired = registry_->ExpireLeases(100);
  EXPECT_EQ(expired.leases_ended, 1u);
  EXPECT_EQ(expired.holds_dropped, 2u);
  EXPECT_EQ(expired.buffers_reclaimed, 2u);
  EXPECT_EQ(expired.bytes_reclaimed, Pages(3));
  EXPECT_THAT(expired.expired_deadlines,
              ElementsAre(kStart + absl::Seconds(5)));
  EXPECT_TRUE(expired.connections_closed.empty());
  EXPECT_FALSE(expired.more_due);
  EXPECT_EQ(Holders(a), 1);
  EXPECT_EQ(Holders(b), -1);
  EXPECT_EQ(Holders(shared), -1);
  EXPECT_THAT(registry_->KeepAlive(alice, fast),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr("lease"), HasSubstr("expired"))));

  for (int i = 0; i < 30; ++i) {
    clock_.Advance(absl::Seconds(1));
    renew_defaults();
    registry_->ExpireLeases(100);
  }
  EXPECT_EQ(Holders(a), -1);
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
  EXPECT_EQ(registry_->Stats().leases, 2u);  // the two defaults
}

TEST_F(RegistryLeaseTest, KeepAliveRenewsToAFullTtl) {
  ConnectionId alice = Open(kAlice);
  LeaseId lease = GrantOk(alice, absl::Seconds(3));
  Handle h = AllocUnder(alice, lease, 1);
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(absl::Seconds(2));
    absl::StatusOr<LeaseInfo> renewed = registry_->KeepAlive(alice, lease);
    ASSERT_THAT(renewed, IsOk());
    EXPECT_EQ(renewed->deadline, clock_.Now() + absl::Seconds(3));
    ASSERT_THAT(registry_->KeepAlive(alice, 0), IsOk());
    EXPECT_EQ(registry_->ExpireLeases(100).leases_ended, 0u);
  }
  EXPECT_EQ(Holders(h), 1);
}

TEST_F(RegistryLeaseTest, RevokeDropsHoldsAndLaterUseSaysItWasRevoked) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  LeaseId lease = GrantOk(alice, absl::Seconds(60));
  Handle h = AllocUnder(alice, lease, Pages(1), "r");
  EXPECT_THAT(registry_->RevokeLease(kBob, lease),
              StatusIs(Code::kPermissionDenied, HasSubstr("may not revoke")));
  absl::StatusOr<CloseResult> revoked = registry_->RevokeLease(kAlice2, lease);
  ASSERT_THAT(revoked, IsOk());  // the same uid from another process may
  EXPECT_EQ(revoked->buffers_reclaimed, 1u);
  EXPECT_EQ(Holders(h), -1);
  EXPECT_THAT(registry_->KeepAlive(alice, lease),
              StatusIs(Code::kNotFound, HasSubstr("was revoked")));
  EXPECT_THAT(registry_->RevokeLease(kAlice, lease),
              StatusIs(Code::kNotFound, HasSubstr("was revoked")));
  EXPECT_THAT(registry_->KeepAlive(alice, 424242),
              StatusIs(Code::kNotFound, HasSubstr("no such lease: 424242")));
  AllocateSpec spec = Spec(1);
  spec.lease = lease;
  EXPECT_THAT(registry_->Allocate(alice, spec),
              StatusIs(Code::kNotFound, HasSubstr("was revoked")));
  EXPECT_THAT(registry_->RevokeLease(kRootId, DefaultOf(bob)), IsOk());
}

TEST_F(RegistryLeaseTest, LeasesOfAConnectionAreItsOwnUnlessDetached) {
  ConnectionId alice = Open(kAlice);
  ConnectionId alice2 = Open(kAlice2);
  ConnectionId bob = Open(kBob);
  LeaseId attached = GrantOk(alice, absl::Seconds(60));
  LeaseId detached = GrantOk(alice, absl::Seconds(60), /*detached=*/true);
  EXPECT_THAT(registry_->KeepAlive(alice2, attached),
              StatusIs(Code::kPermissionDenied,
                       HasSubstr("belongs to another client connection")));
  EXPECT_THAT(registry_->KeepAlive(alice2, detached), IsOk());
  EXPECT_THAT(registry_->KeepAlive(bob, detached),
              StatusIs(Code::kPermissionDenied, _));
  // Root sees every lease; a uid sees its own.
  bool more = true;
  EXPECT_EQ(registry_->ListLeases(kRootId, 0, 100, &more).size(), 5u);
  EXPECT_FALSE(more);
  EXPECT_EQ(registry_->ListLeases(kAlice2, 0, 100, &more).size(), 4u);
  EXPECT_EQ(registry_->ListLeases(kBob, 0, 100, &more).size(), 1u);
  std::vector<LeaseInfo> page = registry_->ListLeases(kAlice2, 0, 3, &more);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_TRUE(more);
  page = registry_->ListLeases(kAlice2, page.back().id, 3, &more);
  EXPECT_EQ(page.size(), 1u);
  EXPECT_FALSE(more);
  EXPECT_THAT(registry_->LeaseTimeToLive(kBob, bob, attached),
              StatusIs(Code::kPermissionDenied, HasSubstr("may not inspect")));
}

TEST_F(RegistryLeaseTest, ClosingAConnectionEndsItsLeasesButNotDetachedOnes) {
  ConnectionId producer = Open(kAlice);
  LeaseId detached = GrantOk(producer, absl::Seconds(30), /*detached=*/true);
  LeaseId attached = GrantOk(producer, absl::Seconds(30));
  Handle handoff = AllocUnder(producer, detached, Pages(1), "handoff");
  Handle scratch = AllocUnder(producer, attached, Pages(1));
  Handle temp = Alloc(producer, Pages(1));

  CloseResult closed = registry_->CloseConnection(producer);
  EXPECT_EQ(closed.leases_ended, 2u);  // default and attached
  EXPECT_EQ(closed.buffers_reclaimed, 2u);
  EXPECT_EQ(Holders(scratch), -1);
  EXPECT_EQ(Holders(temp), -1);
  EXPECT_EQ(Holders(handoff), 1);
  absl::StatusOr<LeaseDetail> orphan =
      registry_->LeaseTimeToLive(kAlice2, 0, detached);
  ASSERT_THAT(orphan, IsOk());
  EXPECT_EQ(orphan->info.client, 0u);

  // A consumer attaches within the TTL and keeps the buffer past it.
  ConnectionId consumer = Open(kAlice2);
  ASSERT_THAT(registry_->Attach(consumer, BufferRef::ByName("handoff"),
                                AccessRequest::kBestAllowed),
              IsOk());
  clock_.Advance(absl::Seconds(9));
  ASSERT_THAT(registry_->KeepAlive(consumer, 0), IsOk());
  clock_.Advance(absl::Seconds(9));
  ASSERT_THAT(registry_->KeepAlive(consumer, 0), IsOk());
  clock_.Advance(absl::Seconds(13));  // t = 31 s: the detached lease is due
  ASSERT_THAT(registry_->KeepAlive(consumer, 0), IsOk());
  CloseResult expired = registry_->ExpireLeases(100);
  EXPECT_EQ(expired.leases_ended, 1u);
  EXPECT_EQ(expired.buffers_reclaimed, 0u);
  EXPECT_EQ(Holders(handoff), 1);
  registry_->CloseConnection(consumer);
  EXPECT_EQ(registry_->Stats().buffers, 0u);
  EXPECT_EQ(registry_->Stats().detached_leases, 0u);
}

TEST_F(RegistryLeaseTest, ExpiryReclaimsAProducersDetachedBufferNobodyTook) {
  ConnectionId producer = Open(kAlice);
  LeaseId detached = GrantOk(producer, absl::Seconds(5), /*detached=*/true);
  AllocUnder(producer, detached, Pages(2), "never-taken");
  registry_->CloseConnection(producer);
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(2));
  clock_.Advance(absl::Seconds(5));
  CloseResult expired = registry_->ExpireLeases(100);
  EXPECT_EQ(expired.bytes_reclaimed, Pages(2));
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0u);
  EXPECT_EQ(registry_->Stats().leases, 0u);
}

TEST_F(RegistryLeaseTest, ReleaseByNameFindsADetachedLeaseOfTheCallersUid) {
  ConnectionId producer = Open(kAlice);
  LeaseId detached = GrantOk(producer, absl::Seconds(60), /*detached=*/true);
  Handle h = AllocUnder(producer, detached, 1, "left-behind");
  registry_->CloseConnection(producer);
  ConnectionId bob = Open(kBob);
  EXPECT_THAT(registry_->Release(bob, BufferRef::ByName("left-behind")),
              StatusIs(Code::kPermissionDenied, HasSubstr("holds no")));
  ConnectionId cli = Open(kAlice2);
  EXPECT_THAT(registry_->Release(cli, BufferRef::ByName("left-behind")),
              IsOkAndHolds(0u));
  EXPECT_EQ(Holders(h), -1);
}

TEST_F(RegistryLeaseTest, ADefaultLeaseThatExpiresEndsItsConnection) {
  ConnectionId stopped = Open(kAlice);
  LeaseId detached = GrantOk(stopped, absl::Seconds(60), /*detached=*/true);
  LeaseId attached = GrantOk(stopped, absl::Seconds(60));
  Alloc(stopped, Pages(1));
  AllocUnder(stopped, attached, Pages(1));
  Handle kept = AllocUnder(stopped, detached, Pages(1));
  clock_.Advance(absl::Seconds(10));
  CloseResult expired = registry_->ExpireLeases(100);
  EXPECT_THAT(expired.connections_closed, ElementsAre(stopped));
  EXPECT_EQ(expired.leases_ended, 2u);
  EXPECT_EQ(expired.buffers_reclaimed, 2u);
  EXPECT_EQ(Holders(kept), 1);
  EXPECT_EQ(registry_->Stats().clients, 0u);
  EXPECT_THAT(AllocSpec(stopped, 1),
              StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
  EXPECT_THAT(registry_->KeepAlive(stopped, 0),
              StatusIs(Code::kFailedPrecondition, HasSubstr("closed")));
}

TEST_F(RegistryLeaseTest, LeaseCountsAreLimited) {
  RegistryOptions options = DefaultOptions();
  options.leases.max_leases_per_connection = 2;
  options.leases.max_detached_leases_per_uid = 1;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  GrantOk(alice, absl::Seconds(5));
  LeaseId second = GrantOk(alice, absl::Seconds(5), /*detached=*/true);
  EXPECT_THAT(registry_->GrantLease(alice, absl::Seconds(5), false),
              AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("2 leases")),
                    RefusedBy(Limit::kMaxLeasesPerConnection)));
  ConnectionId alice2 = Open(kAlice2);
  EXPECT_THAT(
      registry_->GrantLease(alice2, absl::Seconds(5), true),
      AllOf(StatusIs(Code::kResourceExhausted, HasSubstr("1 detached leases")),
            RefusedBy(Limit::kMaxDetachedLeasesPerUid)));
  ASSERT_THAT(registry_->RevokeLease(kAlice, second), IsOk());
  EXPECT_THAT(registry_->GrantLease(alice2, absl::Seconds(5), true), IsOk());
  EXPECT_THAT(registry_->GrantLease(alice, absl::Seconds(5), false), IsOk());
}

TEST_F(RegistryLeaseTest, AMassExpiryIsSweptInBoundedBatches) {
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = Pages(4096);
  options.leases.max_leases_per_connection = 5000;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  constexpr int kLeases = 1000;
  for (int i = 0; i < kLeases; ++i) {
    LeaseId lease = GrantOk(alice, absl::Seconds(2) + absl::Milliseconds(i));
    if (i % 10 == 0) AllocUnder(alice, lease, 1);
  }
  clock_.Advance(absl::Seconds(5));
  ASSERT_THAT(registry_->KeepAlive(alice, 0), IsOk());
  int sweeps = 0;
  uint64_t ended = 0;
  absl::Time last = absl::InfinitePast();
  for (;;) {
    CloseResult batch = registry_->ExpireLeases(64);
    ++sweeps;
    ASSERT_LE(batch.leases_ended, 64u);
    ended += batch.leases_ended;
    for (absl::Time deadline : batch.expired_deadlines) {
      ASSERT_LE(last, deadline);  // earliest first, across batches
      last = deadline;
    }
    if (!batch.more_due) break;
  }
  EXPECT_EQ(ended, static_cast<uint64_t>(kLeases));
  EXPECT_EQ(sweeps, (kLeases + 63) / 64);
  EXPECT_EQ(registry_->Stats().buffers, 0u);
  EXPECT_EQ(registry_->Stats().leases, 1u);
}

TEST_F(RegistryLeaseTest, HoldsMayBeTakenOnlyUnderUsableLeases) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  LeaseId bobs = GrantOk(bob, absl::Seconds(30));
  Handle h = Alloc(alice, 1, "", {testing::kAllReadWrite});
  EXPECT_THAT(registry_->Attach(alice, BufferRef::ByHandle(h),
                                AccessRequest::kBestAllowed, bobs),
              StatusIs(Code::kPermissionDenied, HasSubstr("lease")));
  absl::StatusOr<Grant> grant = registry_->Attach(
      bob, BufferRef::ByHandle(h), AccessRequest::kBestAllowed, bobs);
  ASSERT_THAT(grant, IsOk());
  EXPECT_EQ(grant->lease, bobs);
  EXPECT_THAT(registry_->Release(bob, BufferRef::ByHandle(h), DefaultOf(bob)),
              StatusIs(Code::kFailedPrecondition, HasSubstr("holds no")));
  EXPECT_THAT(registry_->Release(bob, BufferRef::ByHandle(h), bobs),
              IsOkAndHolds(1u));
}

}  // namespace
}  // namespace shmbroker
