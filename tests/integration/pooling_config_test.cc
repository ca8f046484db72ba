// The pooling flags with the real daemon: pooling off, bad flags refused at
// start, prefaulted arenas, and the scavenger returning idle memory and
// closing unused arenas.
#include <cstring>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/pooled_options.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

TEST(PooledOffTest, AskingForPooledIsAFailedPrecondition) {
  TestDaemon daemon({"--pooling=false"});
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  auto c = daemon.Connect();
  ASSERT_TRUE(c.ok()) << c.status();
  auto refused = (*c)->Allocate(Pooled(4096));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--pooling=false"));
  client::AllocateOptions any = Pooled(4096);
  any.kind = client::Kind::kDefault;
  auto b = (*c)->Allocate(any);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->kind(), client::Kind::kDedicated);
  auto status = (*c)->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_FALSE(status->arenas.enabled);
}

TEST(PooledFlagsTest, BadPoolingFlagsAreRefusedAtStartAndPrefaultWorks) {
  const std::pair<const char*, const char*> bad[] = {
      {"--arena_size=12345", "arena size 12345"},
      {"--pooled_max_size=128MiB", "must not exceed the arena size"},
      {"--scavenge_delay=-1s", "must not be negative"},
      {"--scavenge_max_bytes=1", "at least 1"}};
  for (const auto& [flag, why] : bad) {
    Finished run = RunToEnd({DaemonPath(), "--socket=/nonexistent/x.sock",
                             "--metrics_address=", flag});
    EXPECT_EQ(run.exit_code, 2) << flag;
    EXPECT_THAT(run.err, HasSubstr("--arena_size")) << flag;
    EXPECT_THAT(run.err, HasSubstr(why)) << flag;
  }
  TestDaemon daemon({"--arena_prefault=true", "--arena_size=2MiB"});
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  auto c = daemon.Connect();
  ASSERT_TRUE(c.ok()) << c.status();
  auto b = (*c)->Allocate(Pooled(100 << 10));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(AllBytesAre(*b, 0));
  std::memset(b->data(), 3, b->size());
  auto status = (*c)->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->arenas.arena_size, uint64_t{2} << 20);
  EXPECT_EQ(status->arenas.pooled_max_size, uint64_t{512} << 10);
  Finished kind = daemon.Cli({"alloc", "4KiB", "--kind=huge"});
  EXPECT_EQ(kind.exit_code, 2);
  EXPECT_THAT(kind.err, HasSubstr("bad kind \"huge\""));
}

TEST(PooledScavengeTest, IdleMemoryGoesBackToTheOsAndUnusedArenasClose) {
  TestDaemon daemon({"--scavenge_delay=200ms"});
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  auto c = daemon.Connect();
  ASSERT_TRUE(c.ok()) << c.status();
  auto keeper = (*c)->Allocate(Pooled(64));  // keeps the arena in use
  ASSERT_TRUE(keeper.ok()) << keeper.status();
  {
    auto b = (*c)->Allocate(Pooled(1 << 20));
    ASSERT_TRUE(b.ok()) << b.status();
    std::memset(b->data(), 1, b->size());  // resident, then dirty and free
  }
  auto pool = [&] {
    auto status = (*c)->Status();
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? status->arenas : client::PoolStatus{};
  };
  ASSERT_TRUE(WaitForStatus(**c, "the freed, dirty megabyte punched",
                            [](const client::DaemonStatus& s) {
                              return s.arenas.scavenged_bytes_total ==
                                     uint64_t{1} << 20;
                            }));
  EXPECT_EQ(pool().arenas, 1u);

  ASSERT_TRUE(keeper->Release().ok());
  ASSERT_TRUE(WaitForStatus(
      **c, "the unused arena released", [](const client::DaemonStatus& s) {
        return s.arenas.arenas == 0 && s.arenas.arenas_released_total == 1;
      }));
  // A new allocation gets a new arena (and its fd) and works.
  auto again = (*c)->Allocate(Pooled(4096));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(AllBytesAre(*again, 0));
  EXPECT_EQ(again->info().arena_id, 2u);
}

}  // namespace
}  // namespace shmbroker::testing
