// A client holding thousands of buffers is reclaimed in steps of
// --reclaim_batch, and other clients are served meanwhile: SIGKILLed (its
// connection is ended off the fd channel's event loop) and with its lease
// revoked (on the revoking call's thread). The time it takes belongs in the
// benchmark (shmbroker-registry-bench, docs/performance.md); here, every
// other call completes, the steps are counted, and nothing is left.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/lease_fixture.h"

namespace shmbroker::testing {
namespace {

constexpr int kBuffers = 1500;
constexpr int kBatch = 8;

class ReclaimStepsTest : public LeaseTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    std::vector<std::string> flags = LeaseTest::DaemonFlags();
    flags.push_back(absl::StrCat("--reclaim_batch=", kBatch));
    flags.push_back("--metrics_address=127.0.0.1:0");
    return flags;
  }

  double Steps() { return Metric(*daemon_, "shmbroker_reclaim_steps_total"); }

  // Until everything is reclaimed: this test's client allocates, writes and
  // releases a pooled buffer (its calls go over the fd channel) between
  // looks. Every call must succeed.
  ::testing::AssertionResult ServedUntilAllReclaimed(int* calls) {
    return WaitFor("every byte reclaimed, this client served meanwhile",
                   [&](std::string* seen) {
                     client::AllocateOptions options = Sized(4096, 0);
                     options.kind = client::Kind::kPooled;
                     auto buffer = client_->Allocate(options);
                     if (!buffer.ok()) {
                       ADD_FAILURE()
                           << "Allocate while reclaiming: " << buffer.status();
                       return false;
                     }
                     buffer->data()[0] = 1;
                     if (absl::Status s = buffer->Release(); !s.ok()) {
                       ADD_FAILURE() << "Release while reclaiming: " << s;
                       return false;
                     }
                     ++*calls;
                     client::DaemonStatus status = Status();
                     *seen = StatusText(status);
                     return AllReclaimed(status);
                   });
  }
};

TEST_F(ReclaimStepsTest, AKilledClientWithThousandsOfBuffersGoesInSteps) {
  Subprocess worker(Worker({"hold-pooled", std::to_string(kBuffers)}));
  ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(60)))
      << worker.Wait().err;
  ASSERT_EQ(Status().buffers, uint64_t{kBuffers});
  const double steps_before = Steps();
  worker.Signal(SIGKILL);
  EXPECT_EQ(worker.Wait().signal, SIGKILL);
  int calls = 0;
  EXPECT_TRUE(ServedUntilAllReclaimed(&calls));
  EXPECT_GE(calls, 1);
  EXPECT_GE(Steps() - steps_before, kBuffers / kBatch);
  // Taken once its reclaim is done, a moment after Status shows it.
  EXPECT_TRUE(WaitForStatus("the death's reclaim sample",
                            [](const client::DaemonStatus& s) {
                              return s.connection_close_reclaim.samples == 1;
                            }));
}

TEST_F(ReclaimStepsTest, ARevokedLeaseWithThousandsOfHoldsGoesInSteps) {
  Subprocess worker(Worker({"hold-pooled", std::to_string(kBuffers)}));
  ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(60)))
      << worker.Wait().err;
  uint64_t lease = 0;
  auto leases = client_->ListLeases();
  ASSERT_TRUE(leases.ok()) << leases.status();
  for (const client::LeaseInfo& l : *leases) {
    if (l.owner_pid == worker.pid() && l.connection_default) lease = l.id;
  }
  ASSERT_NE(lease, 0);
  const uint64_t held = Status().allocated_bytes;  // all the worker's
  ASSERT_GT(held, 0);
  const double steps_before = Steps();
  auto reclaimed = client_->RevokeLease(lease);
  ASSERT_TRUE(reclaimed.ok()) << reclaimed.status();
  // Done when the call returns, and the reply counts what every step let
  // go of, not the first step's.
  EXPECT_EQ(*reclaimed, held);
  client::DaemonStatus after = Status();
  EXPECT_TRUE(AllReclaimed(after)) << StatusText(after);
  EXPECT_GE(Steps() - steps_before, kBuffers / kBatch);
  worker.Signal(SIGKILL);
  EXPECT_EQ(worker.Wait().signal, SIGKILL);
}

}  // namespace
}  // namespace shmbroker::testing
