// Lifetimes with real processes: holders killed with SIGKILL, a second
// daemon on the same socket, and the daemon's own SIGINT (a stop for good).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

nlohmann::json StatusJson(const TestDaemon& daemon) {
  Finished f = daemon.Cli({"status", "--json"});
  EXPECT_EQ(f.exit_code, 0) << f.err;
  return nlohmann::json::parse(f.out);
}

using LifecycleTest = DaemonTest;

TEST_F(LifecycleTest, HolderKilledWithSigkillHasItsMemoryReclaimed) {
  Subprocess holder(daemon_->CliArgs({"alloc", "1MiB", "--name=victim"}));
  ASSERT_TRUE(holder.WaitForOutput("victim", absl::Seconds(10)));
  Subprocess posix_holder(daemon_->CliArgs(
      {"alloc", "64KiB", "--name=victim2", "--backing=posix", "--json"}));
  auto line = posix_holder.WaitForOutput("victim2", absl::Seconds(10));
  ASSERT_TRUE(line);
  const std::string shm_name = nlohmann::json::parse(*line)["shm_name"];
  ASSERT_FALSE(shm_name.empty());

  nlohmann::json before = StatusJson(*daemon_);
  EXPECT_EQ(before["buffers"], 2);
  EXPECT_EQ(before["allocated_bytes"], (1 << 20) + (64 << 10));

  holder.Signal(SIGKILL);
  posix_holder.Signal(SIGKILL);
  EXPECT_EQ(holder.Wait().signal, SIGKILL);
  EXPECT_EQ(posix_holder.Wait().signal, SIGKILL);
  // The fd channel's hang-up reaches the daemon asynchronously.
  EXPECT_TRUE(WaitForStatus(*client_, "both killed holders' memory reclaimed",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 0 && s.allocated_bytes == 0;
                            }));
  EXPECT_EQ(::shm_open(shm_name.c_str(), O_RDONLY, 0), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(LifecycleTest, KilledHolderLeavesBuffersOthersStillHold) {
  Subprocess holder(daemon_->CliArgs({"put", "shared", "--hold=60s"}),
                    "still here");
  ASSERT_TRUE(holder.WaitForOutput("shared", absl::Seconds(10)));
  auto mine = client_->Attach("shared");
  ASSERT_TRUE(mine.ok()) << mine.status();
  holder.Signal(SIGKILL);
  holder.Wait();
  ASSERT_TRUE(
      WaitFor("the killed holder's hold dropped", [&](std::string* seen) {
        auto info = client_->Describe("shared");
        *seen = info.ok() ? absl::StrCat(info->holders, " holders")
                          : info.status().ToString();
        return info.ok() && info->holders == 1;
      }));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(mine->data()), mine->size()),
            "still here");
}

TEST_F(LifecycleTest, AllocWithHoldReleasesWhenTheDurationEnds) {
  Finished f = daemon_->Cli({"alloc", "4KiB", "--name=brief", "--hold=100ms"});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  EXPECT_THAT(f.out, HasSubstr("brief"));
  EXPECT_EQ(StatusJson(*daemon_)["buffers"], 0);
}

TEST_F(LifecycleTest, SecondDaemonOnTheSameSocketRefusesAndFirstKeepsServing) {
  auto held =
      client_->Allocate({4096, "survivor", client::Backing::kMemfd, {}});
  ASSERT_TRUE(held.ok()) << held.status();
  TestDaemon second({}, daemon_->dir());
  EXPECT_FALSE(second.started());
  EXPECT_THAT(second.startup_output(), HasSubstr("another shmbrokerd"));
  // The first daemon still owns its socket: existing and new clients work.
  EXPECT_TRUE(client_->Ping().ok());
  auto fresh = daemon_->Connect();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  auto attached = (*fresh)->Attach("survivor");
  EXPECT_TRUE(attached.ok()) << attached.status();
  EXPECT_TRUE(std::filesystem::exists(daemon_->socket()));
}

// SIGINT stops for good; SIGTERM stops for a restart (restart_test.cc).
TEST(DaemonShutdownTest, SigintReleasesEverythingRemovesTheSocketAndExitsZero) {
  TestDaemon daemon;
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  Subprocess holder(daemon.CliArgs(
      {"alloc", "8KiB", "--name=at-shutdown", "--backing=posix", "--json"}));
  auto line = holder.WaitForOutput("at-shutdown", absl::Seconds(10));
  ASSERT_TRUE(line);
  const std::string shm_name = nlohmann::json::parse(*line)["shm_name"];
  Finished f = daemon.Stop();
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_THAT(f.err, HasSubstr("stopping"));
  EXPECT_FALSE(std::filesystem::exists(daemon.socket()));
  EXPECT_FALSE(std::filesystem::exists(daemon.socket() + ".fds"));
  EXPECT_EQ(::shm_open(shm_name.c_str(), O_RDONLY, 0), -1);
  // A new daemon can take the socket over at once.
  TestDaemon next({}, daemon.dir());
  EXPECT_TRUE(next.started()) << next.startup_output();
}

}  // namespace
}  // namespace shmbroker::testing
