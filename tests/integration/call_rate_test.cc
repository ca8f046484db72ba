// --max_calls_per_second: a gRPC connection that calls faster than its rate
// is refused with RESOURCE_EXHAUSTED naming the flag, while another
// connection is still served; the refusals are counted, and the connection
// is served again once its rate allows.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kCallRate = 20;

class CallRateTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {absl::StrCat("--max_calls_per_second=", kCallRate),
            "--metrics_address=127.0.0.1:0"};
  }
  // A gRPC channel with a connection of its own (channels share their
  // connections unless told not to), so a rate of its own.
  std::unique_ptr<v1::Broker::Stub> Stub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return v1::Broker::NewStub(grpc::CreateCustomChannel(
        "unix:" + daemon_->socket(), grpc::InsecureChannelCredentials(), args));
  }
  static grpc::Status Ping(v1::Broker::Stub& stub) {
    grpc::ClientContext ctx;
    v1::PingRequest request;
    v1::PingResponse response;
    return stub.Ping(&ctx, request, &response);
  }
};

TEST_F(CallRateTest, AConnectionOverItsRateIsRefusedAndOthersAreServed) {
  auto flooder = Stub();
  // Far more than the burst, far faster than the rate: most are refused.
  int refused = 0;
  grpc::Status refusal;
  for (int i = 0; i < 20 * kCallRate; ++i) {
    grpc::Status s = Ping(*flooder);
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      refusal = s;
    } else {
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_THAT(refusal.error_message(),
              HasSubstr("more than 20 calls in a second"));
  EXPECT_THAT(refusal.error_message(), HasSubstr("(--max_calls_per_second)"));
  // Another connection has a rate of its own.
  auto other = Stub();
  grpc::Status served = Ping(*other);
  EXPECT_TRUE(served.ok()) << served.error_message();
  EXPECT_GE(Metric(*daemon_,
                   "shmbroker_limit_refusals_total{limit=\"max_"
                   "calls_per_second\"}"),
            refused);
  // The flooder is served again once its tokens come back.
  EXPECT_TRUE(
      WaitFor("the flooding connection served again", [&](std::string* seen) {
        grpc::Status s = Ping(*flooder);
        *seen = s.error_message();
        return s.ok();
      }));
}

}  // namespace
}  // namespace shmbroker::testing
