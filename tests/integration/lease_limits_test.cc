// Lease limits with real connections: a KeepAlive flood is held to
// --keepalive_max_per_second (a token bucket per connection with a
// one-second burst) and cut with RESOURCE_EXHAUSTED, renewals below that rate
// are never cut, grants are bounded per connection, others are served all
// along; and lease calls without a session or with bad input fail clearly.
#include <grpcpp/grpcpp.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/lease_fixture.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

using KeepAliveStream =
    grpc::ClientReaderWriter<v1::KeepAliveRequest, v1::KeepAliveResponse>;

// Renews the session's default lease on `stream` until the daemon cuts it
// (or `at_most` renewals). Returns how many it answered with a TTL; sets
// `refused_sent` to when the message it refused was written (the daemon
// refused it after that).
int RenewUntilCut(KeepAliveStream& stream, int at_most,
                  absl::Time* refused_sent,
                  const std::function<void(int)>& between = nullptr) {
  v1::KeepAliveRequest request;  // lease 0: the session's default lease
  v1::KeepAliveResponse response;
  int accepted = 0;
  for (int i = 0; i < at_most; ++i) {
    *refused_sent = absl::Now();
    if (!stream.Write(request) || !stream.Read(&response)) break;
    EXPECT_EQ(response.error_code(), 0) << response.error_message();
    EXPECT_GT(response.ttl().seconds() + response.ttl().nanos(), 0);
    ++accepted;
    if (between) between(i);
  }
  return accepted;
}

TEST_F(LeaseTest, FloodsOfKeepAlivesAndGrantsAreBoundedAndOthersAreServed) {
  // Someone else holds a buffer under its default lease throughout.
  Subprocess bystander(
      daemon_->CliArgs({"alloc", "4KiB", "--name=bystander", "--hold=60s"}));
  ASSERT_TRUE(bystander.WaitForOutput("bystander", absl::Seconds(10)));

  // A flood: renewals as fast as one stream goes. The bucket starts full
  // (one second's worth) and refills at the rate, so what the daemon
  // answers over the flood's wall-clock time is at least the burst and at
  // most the burst plus the rate times that time.
  RawSession raw(*this);
  grpc::ClientContext ctx;
  raw.Prepare(&ctx);
  const absl::Time start = absl::Now();
  auto stream = raw.stub->KeepAlive(&ctx);
  absl::Time refused_sent;
  const int accepted =
      RenewUntilCut(*stream, 100000, &refused_sent, [&](int i) {
        if (i % 100 == 0) EXPECT_TRUE(client_->Ping().ok()) << "renewal " << i;
      });
  grpc::Status ended = stream->Finish();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << ended.error_message() << " after " << accepted << " renewals";
  EXPECT_THAT(ended.error_message(), HasSubstr("keepalive_max_per_second"));
  EXPECT_GE(accepted, kKeepAlivesPerSecond) << "the burst is one second's";
  EXPECT_LE(accepted, kKeepAlivesPerSecond * (1 + elapsed) + 1)
      << "over " << elapsed << " s at " << kKeepAlivesPerSecond << "/s";

  // The budget is the connection's: a new stream does not refill it. Since
  // the refused message the bucket refilled for at most the time since it
  // was written (a fresh budget would answer a burst of 200).
  grpc::ClientContext again_ctx;
  raw.Prepare(&again_ctx);
  auto again = raw.stub->KeepAlive(&again_ctx);
  absl::Time refused_again;
  const int accepted_again = RenewUntilCut(*again, 1000, &refused_again);
  EXPECT_EQ(again->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  const double refilling = absl::ToDoubleSeconds(absl::Now() - refused_sent);
  EXPECT_LE(accepted_again, 1 + kKeepAlivesPerSecond * refilling + 1)
      << "in the " << refilling << " s since the first stream was cut";

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

TEST_F(LeaseTest, KeepAlivesBelowTheRateAreNeverCut) {
  // 300 renewals, half again the burst, each sent at least 1/150 s after the
  // previous answer: three quarters of the rate at most, so the bucket
  // refills faster than they drain it and none may be refused. (The pause
  // paces what we send; a slow machine only sends slower. Nothing waits for
  // a result here.)
  constexpr int kRenewals = 300;
  const absl::Duration spacing =
      absl::Seconds(1) / (0.75 * kKeepAlivesPerSecond);
  RawSession raw(*this);
  grpc::ClientContext ctx;
  raw.Prepare(&ctx);
  auto stream = raw.stub->KeepAlive(&ctx);
  absl::Time last_sent;
  const int accepted = RenewUntilCut(*stream, kRenewals, &last_sent,
                                     [&](int) { absl::SleepFor(spacing); });
  EXPECT_EQ(accepted, kRenewals);
  stream->WritesDone();
  grpc::Status ended = stream->Finish();
  EXPECT_TRUE(ended.ok()) << ended.error_message();
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
