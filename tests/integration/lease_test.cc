// Leases with real processes: clients SIGKILLed while allocating and while
// renewing, a detached handoff between two processes after the producer
// exited, a client stopped past its TTL that learns of the loss after
// SIGCONT, and revocation. (Limits and floods: lease_limits_test.cc.)
#include <signal.h>

#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/lease_fixture.h"

namespace shmbroker::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A detached lease's TTL that outlives a few CLI runs on a loaded machine
// running an ASan build; tests that need it to end wait for its expiry.
constexpr int kDetachedTtlSeconds = 8;

// The SIGKILL lands wherever the worker's loop is: inside an Allocate or a
// Release (in the client, on the wire or in the daemon) or between them.
// Which one is not chosen: the worker runs a different number of rounds
// first each time, and nothing pauses it at a given step.
TEST_F(LeaseTest, ClientsKilledWhileLoopingOnAllocateHaveEveryByteReclaimed) {
  std::mt19937 random(20261123);
  constexpr int kDeaths = 5;
  for (int round = 0; round < kDeaths; ++round) {
    Subprocess worker(
        Worker({"alloc-loop", std::to_string(1 + random() % 200)}));
    ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(20)))
        << worker.Wait().err;
    worker.Signal(SIGKILL);
    EXPECT_EQ(worker.Wait().signal, SIGKILL) << "round " << round;
    EXPECT_TRUE(WaitForStatus(absl::StrCat("round ", round, ": every byte of ",
                                           "the killed worker reclaimed"),
                              AllReclaimed));
  }
  // Each worker died holding a buffer: one reclaim sample per death, taken
  // once its reclaim is done (a moment after Status shows it reclaimed).
  EXPECT_TRUE(WaitForStatus(
      "one reclaim sample per death", [](const client::DaemonStatus& s) {
        return s.connection_close_reclaim.samples == uint64_t{kDeaths};
      }));
}

TEST_F(LeaseTest, AClientKilledWhileRenewingManyLeasesHasEveryByteReclaimed) {
  constexpr int kLeases = 40;
  constexpr absl::Duration kTtl = absl::Seconds(3);
  // Renewed every ~TTL/3: 40 leases make ~40 KeepAlives a second, well under
  // the daemon's budget.
  Subprocess worker(Worker({"keepalive", std::to_string(kLeases), "3s"}));
  ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(20)))
      << worker.Wait().err;
  // Twice past their TTL, every lease is still there: the library renewed
  // each (an unrenewed one would have needed the sweeper a whole TTL late).
  EXPECT_TRUE(WaitFor(
      "the worker's 40 leases, each still holding its buffer, twice past "
      "their TTL",
      [&](std::string* seen) {
        auto leases = client_->ListLeases();
        if (!leases.ok()) {
          *seen = leases.status().ToString();
          return false;
        }
        int live = 0, old_enough = 0;
        for (const client::LeaseInfo& l : *leases) {
          if (l.owner_pid != worker.pid() || l.connection_default) continue;
          live += l.holds == 1 && l.granted_ttl == kTtl;
          old_enough += absl::Now() - l.granted >= 2 * kTtl;
        }
        *seen = absl::StrCat(live, " live with their buffer, ", old_enough,
                             " twice past their TTL");
        return live == kLeases && old_enough == kLeases;
      }));
  client::DaemonStatus held = Status();
  EXPECT_EQ(held.buffers, uint64_t{kLeases}) << StatusText(held);
  EXPECT_EQ(held.leases, uint64_t{kLeases} + 2)
      << StatusText(held);  // + both defaults
  worker.Signal(SIGKILL);
  EXPECT_EQ(worker.Wait().signal, SIGKILL);
  EXPECT_TRUE(
      WaitForStatus("every byte of the killed worker reclaimed", AllReclaimed));
}

TEST_F(LeaseTest, ADetachedBufferIsHandedOffAfterTheProducerExited) {
  Finished producer = RunToEnd(
      daemon_->CliArgs({"put", "handoff", "--detach",
                        absl::StrCat("--ttl=", kDetachedTtlSeconds, "s"),
                        "--json"}),
      "payload for the consumer");
  ASSERT_EQ(producer.exit_code, 0) << producer.err;
  EXPECT_THAT(producer.err, HasSubstr("detached lease"));

  Finished leases = daemon_->Cli({"leases", "--json"});
  ASSERT_EQ(leases.exit_code, 0) << leases.err;
  bool found = false;
  const nlohmann::json listed = nlohmann::json::parse(leases.out);
  for (const auto& l : listed["leases"]) {
    if (!l["detached"].get<bool>()) continue;
    found = true;
    EXPECT_EQ(l["holds"], 1);
    EXPECT_EQ(l["granted_ttl_seconds"], double{kDetachedTtlSeconds});
    EXPECT_GT(l["ttl_seconds"].get<double>(), 0.0);  // still running
    EXPECT_LE(l["ttl_seconds"].get<double>(), double{kDetachedTtlSeconds});
    EXPECT_FALSE(l["connected"].get<bool>());  // the producer has exited
    EXPECT_TRUE(l.contains("id") && l.contains("client_pid"));
  }
  EXPECT_TRUE(found) << leases.out;
  Finished table = daemon_->Cli({"leases"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out,
              AllOf(HasSubstr("ID"), HasSubstr("TTL"), HasSubstr("KIND"),
                    HasSubstr("detached"), HasSubstr("(exited)")));

  // Another process reads it; this one keeps a hold past the lease.
  Finished consumer = daemon_->Cli({"cat", "handoff"});
  ASSERT_EQ(consumer.exit_code, 0) << consumer.err;
  EXPECT_EQ(consumer.out, "payload for the consumer");
  auto kept = client_->Attach("handoff");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_TRUE(WaitForStatus(
      "the detached lease to expire",
      [](const client::DaemonStatus& s) { return s.detached_leases == 0; }));
  EXPECT_EQ(client_->Describe("handoff")->holders, 1u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(kept->data()), kept->size()),
            "payload for the consumer");
  ASSERT_TRUE(kept->Release().ok());
  const client::DaemonStatus after = Status();
  EXPECT_TRUE(AllReclaimed(after)) << StatusText(after);
}

TEST_F(LeaseTest, AnUnclaimedDetachedBufferIsReclaimedAtItsTtl) {
  Finished producer =
      daemon_->Cli({"alloc", "1MiB", "--name=unclaimed", "--detach",
                    absl::StrCat("--ttl=", kDetachedTtlSeconds, "s")});
  ASSERT_EQ(producer.exit_code, 0) << producer.err;
  EXPECT_EQ(Status().buffers, 1u) << "the buffer outlives its CLI";
  EXPECT_TRUE(WaitForStatus("the detached lease to expire and its buffer to go",
                            AllReclaimed));
  // That one lease, and no other, expired.
  EXPECT_EQ(Status().lease_expiry_reclaim.samples, 1u);
}

TEST_F(LeaseTest, ReleaseDropsTheHoldOfADetachedLeaseOfTheSameUid) {
  ASSERT_EQ(daemon_
                ->Cli({"alloc", "4KiB", "--name=left-behind", "--detach",
                       "--ttl=60s"})
                .exit_code,
            0);
  Finished released = daemon_->Cli({"release", "left-behind", "--json"});
  ASSERT_EQ(released.exit_code, 0) << released.err;
  EXPECT_EQ(nlohmann::json::parse(released.out)["holders"], 0);
  EXPECT_EQ(Status().buffers, 0u);
  Finished again = daemon_->Cli({"release", "left-behind"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("no such buffer"));
}

TEST_F(LeaseTest, AStoppedClientLosesItsLeaseAndLearnsOfItAfterSigcont) {
  Subprocess holder(
      daemon_->CliArgs({"alloc", "1MiB", "--name=stopped", "--hold=60s"}));
  ASSERT_TRUE(holder.WaitForOutput("stopped", absl::Seconds(10)));
  ASSERT_EQ(Status().buffers, 1u);
  holder.Signal(SIGSTOP);
  // The default lease (5 s) runs out; the connection is still open.
  EXPECT_TRUE(WaitForStatus("the stopped holder's default lease to expire",
                            AllReclaimed));
  EXPECT_EQ(Status().lease_expiry_reclaim.samples, 1u);
  holder.Signal(SIGCONT);
  Finished f = holder.Wait(absl::Seconds(20));
  EXPECT_EQ(f.exit_code, 1) << f.err;
  EXPECT_THAT(f.err, AllOf(HasSubstr("lease was lost"), HasSubstr("expired")));
}

TEST_F(LeaseTest, ARevokedLeaseIsReportedToItsHolderAndKeepAliveSaysSo) {
  absl::Mutex mu;
  std::vector<std::pair<uint64_t, std::string>> lost;
  client::ClientOptions options;
  options.socket_path = daemon_->socket();
  options.on_lease_lost = [&](uint64_t id, const absl::Status& why) {
    absl::MutexLock lock(&mu);
    lost.emplace_back(id, std::string(why.message()));
  };
  auto holder = client::Client::Connect(options);
  ASSERT_TRUE(holder.ok()) << holder.status();
  // Renewed every ~2 s: the holder hears of the revocation at its next
  // renewal, and a loaded machine does not let it expire first.
  auto lease = (*holder)->GrantLease(absl::Seconds(6));
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto buffer = (*holder)->Allocate(Sized(4096, lease->id));
  ASSERT_TRUE(buffer.ok()) << buffer.status();

  Finished revoke = daemon_->Cli({"revoke", absl::StrCat(lease->id)});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  EXPECT_THAT(revoke.out, HasSubstr("4096 bytes reclaimed"));
  EXPECT_TRUE(
      WaitFor("the holder to hear of the revocation", [&](std::string* seen) {
        absl::MutexLock lock(&mu);
        *seen = absl::StrCat(lost.size(), " losses");
        return !lost.empty();
      }));
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(lost.size(), 1u);
    EXPECT_EQ(lost[0].first, lease->id);
    EXPECT_THAT(lost[0].second, HasSubstr("was revoked"));
  }
  EXPECT_THAT(buffer->lease_status().message(), HasSubstr("was revoked"));
  EXPECT_THAT(buffer->Release().message(), HasSubstr("was revoked"));
  auto again = (*holder)->Allocate(Sized(1, lease->id));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);

  // On the wire: an error in that lease's answer, and the stream goes on.
  RawSession raw(*this);
  grpc::ClientContext ctx;
  raw.Prepare(&ctx);
  auto stream = raw.stub->KeepAlive(&ctx);
  v1::KeepAliveRequest request;
  v1::KeepAliveResponse response;
  request.set_lease_id(lease->id);
  ASSERT_TRUE(stream->Write(request) && stream->Read(&response));
  EXPECT_EQ(response.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(response.error_message(), HasSubstr("was revoked"));
  request.set_lease_id(0);  // this session's default lease
  ASSERT_TRUE(stream->Write(request) && stream->Read(&response));
  EXPECT_EQ(response.error_code(), 0) << response.error_message();
  EXPECT_EQ(response.granted_ttl().seconds(), 5);  // --lease_default_ttl
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace shmbroker::testing
