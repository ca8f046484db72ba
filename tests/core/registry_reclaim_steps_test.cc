// Registry: an ended lease lets go of its buffers in steps of
// LeaseOptions::reclaim_batch, the lock released in between, whichever way
// it ended (revoked, expired, its connection closed). Between steps other
// calls get in (the observer's OnReclaimStep runs unlocked and calls the
// Registry), the lease is already gone for everyone, and the books still
// carry the holds it has yet to drop.
#include <functional>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::kAlice;
using ::shmbroker::testing::kBob;
using ::shmbroker::testing::kRootId;
using ::shmbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Code = absl::StatusCode;

constexpr uint32_t kBatch = 3;
constexpr int kBuffers = 10;

// Runs `between` at each step, unlocked, and records the step sizes.
class StepObserver : public RegistryObserver {
 public:
  void OnReclaimStep(uint64_t buffers) override {
    steps.push_back(buffers);
    if (between) between();
  }
  std::vector<uint64_t> steps;
  std::function<void()> between;
};

class RegistryReclaimStepsTest : public testing::RegistryTestBase {
 protected:
  RegistryReclaimStepsTest() {
    RegistryOptions options = DefaultOptions();
    options.leases.reclaim_batch = kBatch;
    registry_ =
        std::make_unique<Registry>(std::move(options), &clock_, &observer_);
  }

  // Allocates kBuffers one-page buffers under `lease` (0: the default).
  void Fill(ConnectionId client, LeaseId lease) {
    for (int i = 0; i < kBuffers; ++i) {
      AllocateSpec spec = Spec(Pages(1));
      spec.lease = lease;
      ASSERT_THAT(registry_->Allocate(client, spec), IsOk());
    }
  }

  // Between steps: the buffers still held, as Stats (a call that needs the
  // lock) reports them.
  void RecordLiveBuffers() {
    observer_.between = [this] {
      live_between_.push_back(registry_->Stats().buffers);
    };
  }

  StepObserver observer_;
  std::vector<uint64_t> live_between_;
};

TEST_F(RegistryReclaimStepsTest, ARevokedLeaseLetsGoInStepsWithCallsBetween) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<LeaseInfo> lease =
      registry_->GrantLease(alice, absl::Seconds(30), /*detached=*/false);
  ASSERT_THAT(lease, IsOk());
  Fill(alice, lease->id);
  RecordLiveBuffers();
  std::vector<absl::Status> lease_between;
  observer_.between = [&, inner = observer_.between] {
    inner();
    // Gone for every call from the moment it ended.
    lease_between.push_back(
        registry_->LeaseTimeToLive(kAlice, alice, lease->id).status());
  };

  absl::StatusOr<CloseResult> revoked =
      registry_->RevokeLease(kAlice, lease->id);
  ASSERT_THAT(revoked, IsOk());
  EXPECT_THAT(observer_.steps, ElementsAre(3, 3, 3, 1));
  EXPECT_THAT(live_between_, ElementsAre(7, 4, 1, 0));
  for (const absl::Status& s : lease_between) {
    EXPECT_THAT(s, StatusIs(Code::kNotFound, HasSubstr("was revoked")));
  }
  // The caller's counts cover every step.
  EXPECT_EQ(revoked->leases_ended, 1);
  EXPECT_EQ(revoked->holds_dropped, kBuffers);
  EXPECT_EQ(revoked->buffers_reclaimed, kBuffers);
  EXPECT_EQ(revoked->bytes_reclaimed, kBuffers * Pages(1));
  EXPECT_EQ(registry_->Stats().allocated_bytes, 0);
  EXPECT_EQ(registry_->Stats().holds, 0);
}

TEST_F(RegistryReclaimStepsTest,
       AClosedConnectionLetsGoInStepsAndOthersAreServed) {
  ConnectionId alice = Open(kAlice);
  ConnectionId bob = Open(kBob);
  Fill(alice, 0);
  std::vector<absl::Status> bob_between;
  std::vector<absl::Status> alice_between;
  observer_.between = [&] {
    bob_between.push_back(registry_->Allocate(bob, Spec(Pages(1))).status());
    alice_between.push_back(
        registry_->Allocate(alice, Spec(Pages(1))).status());
  };

  CloseResult closed = registry_->CloseConnection(alice);
  EXPECT_THAT(observer_.steps, ElementsAre(3, 3, 3, 1));
  ASSERT_EQ(bob_between.size(), 4);
  for (const absl::Status& s : bob_between) EXPECT_THAT(s, IsOk());
  for (const absl::Status& s : alice_between) {
    EXPECT_THAT(s, StatusIs(Code::kFailedPrecondition, HasSubstr("is closed")));
  }
  EXPECT_EQ(closed.holds_dropped, kBuffers);
  EXPECT_EQ(closed.buffers_reclaimed, kBuffers);
  // Only bob's buffers are left.
  EXPECT_EQ(registry_->Stats().buffers, 4);
  EXPECT_EQ(registry_->Stats().leases, 1);
}

TEST_F(RegistryReclaimStepsTest,
       AnExpiredLeaseLetsGoInStepsAndStaysInTheBooks) {
  ConnectionId alice = Open(kAlice);
  absl::StatusOr<LeaseInfo> lease =
      registry_->GrantLease(alice, absl::Seconds(5), /*detached=*/true);
  ASSERT_THAT(lease, IsOk());
  Fill(alice, lease->id);
  std::vector<uint32_t> booked_holds;
  observer_.between = [&] {
    // A rewrite of the books mid-way keeps the lease and what it still
    // holds: a daemon that stops now must not lose track of those holds.
    Books books = registry_->SnapshotBooks();
    uint32_t holds = 0;
    for (const auto& [key, count] : books.holds) {
      if (key.first == lease->id) holds += count;
    }
    booked_holds.push_back(books.leases.contains(lease->id) ? holds : 999);
  };

  clock_.Advance(absl::Seconds(6));
  CloseResult expired = registry_->ExpireLeases(16);
  EXPECT_EQ(expired.leases_ended, 1);
  EXPECT_EQ(expired.buffers_reclaimed, kBuffers);
  EXPECT_THAT(observer_.steps, ElementsAre(3, 3, 3, 1));
  EXPECT_THAT(booked_holds, ElementsAre(7, 4, 1, 999));
  EXPECT_THAT(registry_->LeaseTimeToLive(kRootId, 0, lease->id),
              StatusIs(Code::kNotFound, HasSubstr("expired")));
  // Only alice's default lease is left to expire.
  EXPECT_EQ(registry_->NextLeaseDeadline(), kStart + absl::Seconds(10));
}

// Between steps the drain sleeps for LeaseOptions::reclaim_pause (the
// daemon's --reclaim_pause), giving its CPU to other threads: three pauses
// between four steps take at least three times the pause.
TEST_F(RegistryReclaimStepsTest, ADrainSleepsBetweenItsSteps) {
  RegistryOptions options = DefaultOptions();
  options.leases.reclaim_batch = kBatch;
  options.leases.reclaim_pause = kMaxReclaimPause;
  registry_ =
      std::make_unique<Registry>(std::move(options), &clock_, &observer_);
  ConnectionId alice = Open(kAlice);
  Fill(alice, 0);

  const absl::Time start = absl::Now();
  registry_->CloseConnection(alice);
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(observer_.steps, ElementsAre(3, 3, 3, 1));
  EXPECT_GE(took, 3 * kMaxReclaimPause);
  EXPECT_EQ(registry_->Stats().buffers, 0);
}

}  // namespace
}  // namespace shmbroker
