// --tenant_limits with the real daemon and real uids: a uid named in the
// file has its own quota while another keeps the defaults; SIGHUP applies a
// new file whole, refuses a bad one and keeps the limits in force; a bad
// file stops the daemon at start; SIGHUP without a file is harmless. Needs
// root (as CI has): run as a user, these tests fail rather than skip.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string NobodyMayHold(int buffers) {
  return absl::StrCat(R"({"tenants": [{"uid": 65534, "max_buffers": )", buffers,
                      "}]}");
}

std::string Reloads(const std::string& result) {
  return absl::StrCat("shmbroker_tenant_limits_reloads_total{result=\"", result,
                      "\"}");
}

class TenantLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RunningAsRoot());
    WriteFile(limits_path_, NobodyMayHold(2));
    TestDaemon::Launch launch;
    launch.log_path = log_path_;
    daemon_ = std::make_unique<TestDaemon>(
        std::vector<std::string>{"--socket_group=" + std::to_string(kNobody),
                                 "--tenant_limits=" + limits_path_},
        "", launch);
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
    ShareCliWithOtherUids(*daemon_);
  }
  void TearDown() override {
    holder_.reset();
    daemon_.reset();
    ::unlink(limits_path_.c_str());
    ::unlink(log_path_.c_str());
  }

  // Writes the file, sends SIGHUP and waits for the daemon to have read it
  // (`result`: applied or refused) the `nth` time.
  void Reload(const std::string& text, const std::string& result, int nth) {
    WriteFile(limits_path_, text);
    ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
    ASSERT_TRUE(WaitFor("the limits re-read", [&](std::string* seen) {
      const double reads = Metric(*daemon_, Reloads(result));
      *seen = absl::StrCat(Reloads(result), " ", reads);
      return reads == nth;
    }));
  }

  // One more buffer for nobody, released at once.
  Finished NobodyAllocates() {
    return RunCliAs(*daemon_, kNobody, {"alloc", "4KiB", "--hold=0s"});
  }

  const std::string limits_path_ = NewTempFile("tenant-limits");
  const std::string log_path_ = NewTempFile("tenant-limits-log");
  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<Subprocess> holder_;
};

TEST_F(TenantLimitsTest, AUidsOwnQuotaAppliesAndSighupReloadsOrKeepsIt) {
  EXPECT_EQ(Metric(*daemon_, "shmbroker_tenant_limits_uids"), 1);
  // nobody keeps one buffer; its own quota of 2 leaves room for one more.
  holder_ = std::make_unique<Subprocess>(
      CliArgsAs(*daemon_, kNobody, {"put", "held", "--hold=60s"}), "x",
      CliEnvAs(*daemon_));
  ASSERT_TRUE(holder_->WaitForOutput("held", absl::Seconds(20)));
  Finished second = NobodyAllocates();
  EXPECT_EQ(second.exit_code, 0) << second.err;

  // Lowered to 1: refused, naming the quota as nobody's own.
  Reload(NobodyMayHold(1), "applied", 1);
  Finished over = NobodyAllocates();
  EXPECT_EQ(over.exit_code, 1);
  EXPECT_THAT(over.err, HasSubstr("uid 65534 has 1 of 1 buffers (its own "
                                  "quota) (--max_buffers_per_uid)"));
  // Root, not named, has the defaults (half of --max_buffers).
  auto root = daemon_->Connect();
  ASSERT_TRUE(root.ok()) << root.status();
  client::AllocateOptions options;
  options.size = 4096;
  std::vector<client::Buffer> held;
  for (int i = 0; i < 3; ++i) {
    auto buffer = (*root)->Allocate(options);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    held.push_back(std::move(*buffer));
  }

  // A bad file is refused whole, says why, and nobody keeps its quota of 1.
  Reload(R"({"tenants": [{"uid": 65534, "max_buffers": "many"}]})", "refused",
         1);
  EXPECT_EQ(NobodyAllocates().exit_code, 1);
  EXPECT_THAT(ReadWholeFile(log_path_),
              HasSubstr("tenant limits refused, the limits in force are "
                        "kept: " +
                        limits_path_ + ": tenants[0].max_buffers"));
  EXPECT_EQ(Metric(*daemon_, "shmbroker_tenant_limits_uids"), 1);

  // Nobody named: nobody has the defaults again.
  Reload(R"({"tenants": []})", "applied", 2);
  Finished again = NobodyAllocates();
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Metric(*daemon_, "shmbroker_tenant_limits_uids"), 0);
}

TEST(TenantLimitsStartTest, ABadFileStopsTheDaemonAtStartNamingWhere) {
  const std::string path = NewTempFile("tenant-limits-bad");
  WriteFile(path, R"({"tenants": [{"uid": 7}, {"uid": 7}]})");
  Finished run = RunToEnd({DaemonPath(), "--socket=/nonexistent/x.sock",
                           "--metrics_address=", "--tenant_limits=" + path});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--tenant_limits: " + path +
                                 ": tenants[1]: uid 7 is named twice"));
  ::unlink(path.c_str());
}

TEST(TenantLimitsStartTest, SighupWithoutAFileIsHarmless) {
  const std::string log_path = NewTempFile("tenant-limits-none-log");
  TestDaemon::Launch launch;
  launch.log_path = log_path;
  auto daemon =
      std::make_unique<TestDaemon>(std::vector<std::string>{}, "", launch);
  ASSERT_TRUE(daemon->started()) << daemon->startup_output();
  ASSERT_EQ(::kill(daemon->pid(), SIGHUP), 0);
  EXPECT_TRUE(WaitFor("the SIGHUP logged", [&](std::string* seen) {
    *seen = ReadWholeFile(log_path);
    return absl::StrContains(*seen, "no --tenant_limits file to re-read");
  }));
  auto client = daemon->Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->Status().ok());
  client->reset();
  daemon.reset();  // stops it and checks how it exited
  ::unlink(log_path.c_str());
}

}  // namespace
}  // namespace shmbroker::testing
