// Leases with real processes: clients SIGKILLed while allocating and while
// renewing, a detached handoff between two processes after the producer
// exited, a client stopped past its TTL that learns of the loss after
// SIGCONT, revocation, and floods of KeepAlives and grants.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/fd_channel_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class LeaseTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--lease_min_ttl=100ms", "--lease_default_ttl=1s",
            "--max_leases_per_client=64", "--keepalive_max_per_second=200"};
  }

  client::DaemonStatus Status() {
    auto status = client_->Status();
    EXPECT_TRUE(status.ok()) << status.status();
    return status.value_or(client::DaemonStatus{});
  }

  // Nothing allocated, and only client_'s connection and default lease left.
  bool AllReclaimed() {
    client::DaemonStatus s = Status();
    return s.buffers == 0 && s.allocated_bytes == 0 && s.holds == 0 &&
           s.clients == 1 && s.leases == 1;
  }

  std::vector<std::string> Worker(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {LEASE_WORKER_PATH, daemon_->socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // A raw gRPC stub to the daemon.
  std::unique_ptr<v1::Broker::Stub> RawStub() {
    return v1::Broker::NewStub(grpc::CreateChannel(
        "unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
  }

  // A client connection of our own, spoken to without the library: its fd
  // channel (kept open while this lives), token and a stub.
  struct RawSession {
    explicit RawSession(LeaseTest& test)
        : fd(ConnectRawFdChannel(test.daemon_->socket(), &token)),
          stub(test.RawStub()) {}
    ~RawSession() { ::close(fd); }
    void Prepare(grpc::ClientContext* ctx) const {
      ctx->AddMetadata(fdchannel::kConnectionTokenKey, token);
    }
    std::string token;
    int fd;
    std::unique_ptr<v1::Broker::Stub> stub;
  };
};

client::AllocateOptions Sized(uint64_t size, uint64_t lease_id) {
  client::AllocateOptions options;
  options.size = size;
  options.lease_id = lease_id;
  return options;
}

std::string StatusText(const client::DaemonStatus& s) {
  return absl::StrCat("buffers=", s.buffers, " allocated=", s.allocated_bytes,
                      " holds=", s.holds, " clients=", s.clients,
                      " leases=", s.leases);
}

TEST_F(LeaseTest, ClientsKilledMidAllocateHaveEveryByteReclaimed) {
  std::mt19937 random(20261123);
  for (int round = 0; round < 5; ++round) {
    Subprocess worker(Worker({"alloc-loop"}));
    ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(10)));
    absl::SleepFor(absl::Milliseconds(20 + random() % 200));
    worker.Signal(SIGKILL);
    EXPECT_EQ(worker.Wait().signal, SIGKILL) << "round " << round;
    EXPECT_TRUE(Eventually([&] { return AllReclaimed(); }))
        << "round " << round << ": " << StatusText(Status());
  }
  client::DaemonStatus s = Status();
  EXPECT_GE(s.connection_close_reclaim.samples, 1u);
  EXPECT_LE(s.connection_close_reclaim.p50, s.connection_close_reclaim.max);
}

TEST_F(LeaseTest, AClientKilledWhileRenewingManyLeasesHasEveryByteReclaimed) {
  Subprocess worker(Worker({"keepalive", "40", "300ms"}));
  ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(20)));
  // Well past the TTL: the library's renewals keep all 40 alive.
  absl::SleepFor(absl::Seconds(1));
  client::DaemonStatus held = Status();
  EXPECT_EQ(held.buffers, 40u) << StatusText(held);
  EXPECT_EQ(held.leases, 42u) << StatusText(held);  // + both defaults
  worker.Signal(SIGKILL);
  EXPECT_EQ(worker.Wait().signal, SIGKILL);
  EXPECT_TRUE(Eventually([&] { return AllReclaimed(); }))
      << StatusText(Status());
}

TEST_F(LeaseTest, ADetachedBufferIsHandedOffAfterTheProducerExited) {
  Finished producer = RunToEnd(
      daemon_->CliArgs({"put", "handoff", "--detach", "--ttl=2s", "--json"}),
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
    EXPECT_EQ(l["granted_ttl_seconds"], 2.0);
    EXPECT_GT(l["ttl_seconds"].get<double>(), 0.0);
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
  EXPECT_TRUE(Eventually([&] { return Status().detached_leases == 0; }))
      << "the detached lease did not expire";
  EXPECT_EQ(client_->Describe("handoff")->holders, 1u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(kept->data()), kept->size()),
            "payload for the consumer");
  ASSERT_TRUE(kept->Release().ok());
  EXPECT_TRUE(AllReclaimed()) << StatusText(Status());
}

TEST_F(LeaseTest, AnUnclaimedDetachedBufferIsReclaimedAtItsTtl) {
  Finished producer = daemon_->Cli(
      {"alloc", "1MiB", "--name=unclaimed", "--detach", "--ttl=500ms"});
  ASSERT_EQ(producer.exit_code, 0) << producer.err;
  EXPECT_EQ(Status().buffers, 1u);
  EXPECT_TRUE(Eventually([&] { return AllReclaimed(); }))
      << StatusText(Status());
  EXPECT_GE(Status().lease_expiry_reclaim.samples, 1u);
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
  // The default lease (1 s) runs out; the connection is still open.
  EXPECT_TRUE(Eventually([&] { return AllReclaimed(); }))
      << StatusText(Status());
  EXPECT_GE(Status().lease_expiry_reclaim.samples, 1u);
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
  auto lease = (*holder)->GrantLease(absl::Seconds(1));
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto buffer = (*holder)->Allocate(Sized(4096, lease->id));
  ASSERT_TRUE(buffer.ok()) << buffer.status();

  Finished revoke = daemon_->Cli({"revoke", absl::StrCat(lease->id)});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  EXPECT_THAT(revoke.out, HasSubstr("4096 bytes reclaimed"));
  EXPECT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
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
  EXPECT_EQ(response.granted_ttl().seconds(), 1);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(LeaseTest, FloodsOfKeepAlivesAndGrantsAreBoundedAndOthersAreServed) {
  // Someone else holds a buffer under its default lease throughout.
  Subprocess bystander(
      daemon_->CliArgs({"alloc", "4KiB", "--name=bystander", "--hold=60s"}));
  ASSERT_TRUE(bystander.WaitForOutput("bystander", absl::Seconds(10)));

  RawSession raw(*this);
  grpc::ClientContext ctx;
  raw.Prepare(&ctx);
  auto stream = raw.stub->KeepAlive(&ctx);
  v1::KeepAliveRequest request;
  v1::KeepAliveResponse response;
  int answered = 0;
  for (int i = 0; i < 100000; ++i) {
    if (!stream->Write(request) || !stream->Read(&response)) break;
    ++answered;
    if (i % 100 == 0) {
      ASSERT_TRUE(client_->Ping().ok());
    }
  }
  grpc::Status ended = stream->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(ended.error_message(), HasSubstr("keepalive_max_per_second"));
  EXPECT_LT(answered, 100000);

  // The budget is the connection's: a new stream does not refill it.
  grpc::ClientContext again_ctx;
  raw.Prepare(&again_ctx);
  auto again = raw.stub->KeepAlive(&again_ctx);
  int answered_again = 0;
  for (int i = 0; i < 1000; ++i) {
    if (!again->Write(request) || !again->Read(&response)) break;
    ++answered_again;
  }
  EXPECT_EQ(again->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_LT(answered_again, 200);  // the burst a fresh budget would allow

  // Grants: bounded per connection, with the flag named.
  grpc::Status refused;
  int granted = 0;
  for (int i = 0; i < 1000 && refused.ok(); ++i) {
    grpc::ClientContext grant_ctx;
    raw.Prepare(&grant_ctx);
    v1::GrantLeaseResponse granted_lease;
    refused = raw.stub->GrantLease(&grant_ctx, v1::GrantLeaseRequest(),
                                   &granted_lease);
    if (refused.ok()) ++granted;
  }
  EXPECT_EQ(granted, 64);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              HasSubstr("64 leases besides its default one, the most allowed "
                        "(--max_leases_per_client)"));

  // Others were served all along and still are.
  EXPECT_TRUE(client_->GrantLease(absl::Seconds(1)).ok());
  auto described = client_->Describe("bystander");
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->holders, 1u);
}

TEST_F(LeaseTest, LeaseCallsWithoutASessionOrWithBadInputFailClearly) {
  auto stub = RawStub();
  {
    grpc::ClientContext ctx;
    auto stream = stub->KeepAlive(&ctx);
    v1::KeepAliveRequest request;
    v1::KeepAliveResponse response;
    stream->Write(request);
    EXPECT_FALSE(stream->Read(&response));
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("no client connection"));
  }
  {
    grpc::ClientContext ctx;
    v1::GrantLeaseResponse response;
    grpc::Status s = stub->GrantLease(&ctx, v1::GrantLeaseRequest(), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
  {
    RawSession raw(*this);
    grpc::ClientContext ctx;
    raw.Prepare(&ctx);
    v1::GrantLeaseRequest request;
    request.mutable_ttl()->set_seconds(-5);
    v1::GrantLeaseResponse response;
    grpc::Status s = raw.stub->GrantLease(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("bad ttl"));
  }
  {
    grpc::ClientContext ctx;
    v1::RevokeLeaseRequest request;  // lease 0
    v1::RevokeLeaseResponse response;
    grpc::Status s = stub->RevokeLease(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    request.set_lease_id(987654);
    grpc::ClientContext ctx2;
    s = stub->RevokeLease(&ctx2, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("no such lease: 987654"));
  }
  Finished usage = daemon_->Cli({"revoke", "abc"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("bad LEASE_ID"));
  Finished ttl = daemon_->Cli({"alloc", "4KiB", "--ttl=-1s"});
  EXPECT_EQ(ttl.exit_code, 2);
  EXPECT_THAT(ttl.err, HasSubstr("--ttl must not be negative"));
}

}  // namespace
}  // namespace shmbroker::testing
