// Per-uid quotas across real uids: root (the test) and nobody (65534, the
// CLI run through setpriv) share a daemon. Each limit is reached, refused
// with its flag named, and counted in shmbroker_limit_refusals_total; the
// other uid is served meanwhile; room comes back when the owner's buffers
// or connections go. Needs root (as CI has): run as a user, these tests
// fail rather than skip.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/byte_size.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

std::string Refusals(const std::string& limit) {
  return absl::StrCat("shmbroker_limit_refusals_total{limit=\"", limit, "\"}");
}

class QuotaTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--socket_group=" + std::to_string(kNobody), "--capacity=256MiB",
            "--max_bytes_per_uid=16MiB", "--max_buffers_per_uid=4"};
  }

  void SetUp() override {
    ASSERT_TRUE(RunningAsRoot());
    DaemonTest::SetUp();
    ShareCliWithOtherUids(*daemon_);
  }

  Finished CliAsNobody(const std::vector<std::string>& args) {
    return RunCliAs(*daemon_, kNobody, args);
  }
  // The CLI as nobody, left running (e.g. holding a buffer).
  std::unique_ptr<Subprocess> StartAsNobody(
      const std::vector<std::string>& args, const std::string& input = "") {
    return std::make_unique<Subprocess>(CliArgsAs(*daemon_, kNobody, args),
                                        input, CliEnvAs(*daemon_));
  }

  absl::StatusOr<client::Buffer> Allocate(uint64_t size) {
    client::AllocateOptions options;
    options.size = size;
    options.kind = client::Kind::kDedicated;
    return client_->Allocate(options);
  }
};

TEST_F(QuotaTest, BytesPerUidIsRefusedNamingTheFlagWhileAnotherUidIsServed) {
  auto big = Allocate(12 * kMiB);
  ASSERT_TRUE(big.ok()) << big.status();
  auto rest = Allocate(4 * kMiB);
  ASSERT_TRUE(rest.ok()) << rest.status();
  auto over = Allocate(1);
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted)
      << over.status();
  EXPECT_THAT(over.status().message(),
              HasSubstr("uid 0 has 16777216 of 16777216 bytes"));
  EXPECT_THAT(over.status().message(), HasSubstr("(--max_bytes_per_uid)"));

  // nobody has a quota of its own.
  Finished alloc =
      CliAsNobody({"alloc", "8MiB", "--kind=dedicated", "--hold=0s"});
  EXPECT_EQ(alloc.exit_code, 0) << alloc.err;

  // Room comes back with the owner's release.
  *rest = client::Buffer();
  EXPECT_TRUE(WaitFor("root's quota has room again", [&](std::string* seen) {
    auto again = Allocate(4 * kMiB);
    *seen = again.status().ToString();
    return again.ok();
  }));
  EXPECT_EQ(Metric(*daemon_, Refusals("max_bytes_per_uid")), 1);
}

TEST_F(QuotaTest, BuffersPerUidIsRefusedNamingTheFlagWhileAnotherUidIsServed) {
  std::vector<client::Buffer> held;
  for (int i = 0; i < 4; ++i) {
    auto b = Allocate(4096);
    ASSERT_TRUE(b.ok()) << b.status();
    held.push_back(std::move(*b));
  }
  auto over = Allocate(4096);
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted)
      << over.status();
  EXPECT_THAT(over.status().message(), HasSubstr("uid 0 has 4 of 4 buffers"));
  EXPECT_THAT(over.status().message(), HasSubstr("(--max_buffers_per_uid)"));

  Finished alloc = CliAsNobody({"alloc", "4KiB", "--hold=0s"});
  EXPECT_EQ(alloc.exit_code, 0) << alloc.err;

  held.pop_back();
  EXPECT_TRUE(WaitFor("root's quota has room again", [&](std::string* seen) {
    auto again = Allocate(4096);
    *seen = again.status().ToString();
    return again.ok();
  }));
  EXPECT_EQ(Metric(*daemon_, Refusals("max_buffers_per_uid")), 1);
}

TEST_F(QuotaTest, AKilledOwnersBuffersAreCreditedToItsUid) {
  // nobody holds its whole quota in one buffer, then dies.
  auto holder =
      StartAsNobody({"alloc", "16MiB", "--kind=dedicated", "--hold=60s"});
  ASSERT_TRUE(holder->WaitForOutput("dedicated", absl::Seconds(20)));
  Finished over =
      CliAsNobody({"alloc", "4KiB", "--kind=dedicated", "--hold=0s"});
  EXPECT_EQ(over.exit_code, 1);
  EXPECT_THAT(over.err, HasSubstr("uid 65534 has 16777216 of 16777216 bytes"));
  EXPECT_THAT(over.err, HasSubstr("--max_bytes_per_uid"));
  // Root is served all along.
  auto mine = Allocate(16 * kMiB);
  ASSERT_TRUE(mine.ok()) << mine.status();

  holder->Signal(SIGKILL);
  holder->Wait();
  EXPECT_TRUE(WaitFor("nobody's quota has room again", [&](std::string* seen) {
    Finished again =
        CliAsNobody({"alloc", "4KiB", "--kind=dedicated", "--hold=0s"});
    *seen = again.err;
    return again.exit_code == 0;
  }));
}

class ConnectionQuotaTest : public QuotaTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--socket_group=" + std::to_string(kNobody),
            "--max_connections_per_uid=2"};
  }
};

TEST_F(ConnectionQuotaTest, ThirdGrpcConnectionOfAUidIsRefusedUntilOneCloses) {
  // Two processes of nobody's, each keeping its gRPC connection open (its
  // lease keeper's stream).
  auto first = StartAsNobody({"put", "first", "--hold=60s"}, "1");
  auto second = StartAsNobody({"put", "second", "--hold=60s"}, "2");
  ASSERT_TRUE(first->WaitForOutput("first", absl::Seconds(20)));
  ASSERT_TRUE(second->WaitForOutput("second", absl::Seconds(20)));

  Finished refused = CliAsNobody({"status"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err,
              HasSubstr("uid 65534 already has 2 gRPC connections open"));
  EXPECT_THAT(refused.err, HasSubstr("(--max_connections_per_uid)"));
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1)
      << refused.err;
  EXPECT_GE(Metric(*daemon_, Refusals("max_connections_per_uid")), 1);

  // Root's connections are its own.
  auto status = client_->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->buffers, 2u);

  // One closes (its process ends): nobody is served again.
  first->Signal(SIGTERM);
  first->Wait();
  EXPECT_TRUE(WaitFor("nobody served again", [&](std::string* seen) {
    Finished again = CliAsNobody({"status"});
    *seen = again.err;
    return again.exit_code == 0;
  }));
  // Root's client and nobody's second holder; the others are gone.
  EXPECT_TRUE(WaitFor("two gRPC connections open", [&](std::string* seen) {
    const double open = Metric(*daemon_, "shmbroker_grpc_connections");
    *seen = absl::StrCat("shmbroker_grpc_connections ", open);
    return open == 2;
  }));
}

}  // namespace
}  // namespace shmbroker::testing
