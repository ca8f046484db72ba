// Back-pressure with the real daemon: an Allocate that asks to wait for
// room (AllocateOptions::wait_for_room, the CLI's --wait) waits instead of
// failing, on the fd channel and over gRPC alike; waiters are served first
// come, first served as memory is released; the deadline ends a wait with
// the refusal it waited on; a request that can never fit is refused at
// once; waiters are bounded per connection; a killed waiter leaves nothing.
#include <signal.h>

#include <cstring>
#include <future>
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

client::AllocateOptions Dedicated(uint64_t size,
                                  absl::Duration wait = absl::ZeroDuration()) {
  client::AllocateOptions options;
  options.size = size;
  options.kind = client::Kind::kDedicated;
  options.wait_for_room = wait;
  return options;
}

class RoomWaitTest : public DaemonTest {
 protected:
  // Room for two 4 MiB buffers, all of it the test's uid's to take.
  std::vector<std::string> DaemonFlags() override {
    return {"--capacity=8MiB", "--max_bytes_per_uid=8MiB", "--pooling=false",
            "--max_waiters_per_connection=2"};
  }

  ::testing::AssertionResult WaitersAre(int n) {
    return WaitFor(
        absl::StrCat(n, " Allocate calls waiting for room"),
        [&](std::string* seen) {
          const double waiting = Metric(*daemon_, "shmbroker_allocate_waiters");
          *seen = absl::StrCat("shmbroker_allocate_waiters ", waiting);
          return waiting == n;
        });
  }

  std::unique_ptr<client::Client> Connect(bool on_fd_channel = true) {
    client::ClientOptions options;
    options.socket_path = daemon_->socket();
    options.calls_on_fd_channel = on_fd_channel;
    auto c = client::Client::Connect(options);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
};

TEST_F(RoomWaitTest, WaitersAreServedInOrderAsRoomComesBack) {
  auto first = client_->Allocate(Dedicated(4 * kMiB));
  auto second = client_->Allocate(Dedicated(4 * kMiB));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  // Without waiting: refused at once.
  EXPECT_EQ(client_->Allocate(Dedicated(4 * kMiB)).status().code(),
            absl::StatusCode::kResourceExhausted);

  // One waiter calls on the fd channel, the next over gRPC.
  auto early_client = Connect(/*on_fd_channel=*/true);
  auto late_client = Connect(/*on_fd_channel=*/false);
  ASSERT_TRUE(early_client && late_client);
  auto early = std::async(std::launch::async, [&] {
    return early_client->Allocate(Dedicated(4 * kMiB, absl::Seconds(60)));
  });
  ASSERT_TRUE(WaitersAre(1));
  auto late = std::async(std::launch::async, [&] {
    return late_client->Allocate(Dedicated(4 * kMiB, absl::Seconds(60)));
  });
  ASSERT_TRUE(WaitersAre(2));

  // Room for one: the first in line gets it, the other waits on.
  ASSERT_TRUE(first->Release().ok());
  absl::StatusOr<client::Buffer> got_early = early.get();
  ASSERT_TRUE(got_early.ok()) << got_early.status();
  EXPECT_EQ(got_early->size(), 4 * kMiB);
  EXPECT_TRUE(WaitersAre(1));
  EXPECT_EQ(late.wait_for(std::chrono::seconds(0)),
            std::future_status::timeout);

  ASSERT_TRUE(second->Release().ok());
  absl::StatusOr<client::Buffer> got_late = late.get();
  ASSERT_TRUE(got_late.ok()) << got_late.status();
  std::memset(got_late->data(), 7, got_late->size());  // real memory
  EXPECT_TRUE(WaitersAre(0));
  EXPECT_EQ(Metric(*daemon_, "shmbroker_allocate_wait_seconds_count"), 2);
}

TEST_F(RoomWaitTest, AWaitEndsAtItsDeadlineAndWhatCanNeverFitIsRefusedAtOnce) {
  auto all = client_->Allocate(Dedicated(8 * kMiB));
  ASSERT_TRUE(all.ok()) << all.status();
  auto timed_out =
      client_->Allocate(Dedicated(4 * kMiB, absl::Milliseconds(200)));
  EXPECT_EQ(timed_out.status().code(), absl::StatusCode::kDeadlineExceeded)
      << timed_out.status();
  EXPECT_THAT(timed_out.status().message(),
              HasSubstr("deadline passed waiting for room for 4194304 bytes: "
                        "over capacity"));
  // It names the limit it waited on, as the refusal would have.
  EXPECT_THAT(timed_out.status().message(), HasSubstr("(--capacity)"));

  // Larger than the capacity: no release can make room.
  auto never = client_->Allocate(Dedicated(16 * kMiB, absl::Seconds(60)));
  EXPECT_EQ(never.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(never.status().message(), HasSubstr("(--capacity)"));
  EXPECT_TRUE(WaitersAre(0));

  // At most --max_waiters_per_connection waiting calls per connection.
  auto waiting_client = Connect();
  ASSERT_TRUE(waiting_client);
  std::vector<std::future<absl::StatusOr<client::Buffer>>> waits;
  for (int i = 0; i < 2; ++i) {
    waits.push_back(std::async(std::launch::async, [&] {
      return waiting_client->Allocate(Dedicated(kMiB, absl::Seconds(60)));
    }));
    ASSERT_TRUE(WaitersAre(i + 1));
  }
  auto over = waiting_client->Allocate(Dedicated(kMiB, absl::Seconds(60)));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(),
              HasSubstr("(--max_waiters_per_connection)"));
  ASSERT_TRUE(all->Release().ok());
  for (auto& wait : waits) EXPECT_TRUE(wait.get().ok());
}

TEST_F(RoomWaitTest, AKilledWaiterLeavesNothingBehind) {
  auto all = client_->Allocate(Dedicated(8 * kMiB));
  ASSERT_TRUE(all.ok()) << all.status();
  auto waiter = std::make_unique<Subprocess>(daemon_->CliArgs(
      {"alloc", "4MiB", "--kind=dedicated", "--wait=60s", "--hold=60s"}));
  ASSERT_TRUE(WaitersAre(1));
  waiter->Signal(SIGKILL);
  waiter->Wait();
  EXPECT_TRUE(WaitersAre(0));
  // Room comes back and nobody takes it.
  ASSERT_TRUE(all->Release().ok());
  EXPECT_TRUE(WaitForStatus(*client_, "no buffer and no byte left",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 0 && s.allocated_bytes == 0;
                            }));

  // The CLI waits for room too, and then holds it.
  auto holder = client_->Allocate(Dedicated(8 * kMiB));
  ASSERT_TRUE(holder.ok()) << holder.status();
  auto cli = std::make_unique<Subprocess>(daemon_->CliArgs(
      {"alloc", "4MiB", "--kind=dedicated", "--wait=60s", "--hold=0s"}));
  ASSERT_TRUE(WaitersAre(1));
  ASSERT_TRUE(holder->Release().ok());
  Finished done = cli->Wait();
  EXPECT_EQ(done.exit_code, 0) << done.err;
  EXPECT_THAT(done.out, HasSubstr("4MiB"));
}

}  // namespace
}  // namespace shmbroker::testing
