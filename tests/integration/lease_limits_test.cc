// Lease limits with real connections: a KeepAlive flood is cut with
// RESOURCE_EXHAUSTED, grants are bounded per connection, others are served
// all along; and lease calls without a session or with bad input fail
// clearly.
#include <grpcpp/grpcpp.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/lease_fixture.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

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
  EXPECT_THAT(refused.error_message(), HasSubstr("max_leases_per_client=64"));

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
