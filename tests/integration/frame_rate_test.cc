// --max_frames_per_second: a client connection flooding its fd channel is
// not read from for a while (counted, and said once in the log), while
// other clients are served; what it sent is still applied, and once it
// hangs up its connection ends as any other.
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

constexpr int kFrameRate = 50;

class FrameRateTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {absl::StrCat("--max_frames_per_second=", kFrameRate),
            "--metrics_address=127.0.0.1:0"};
  }
  double Throttled() {
    return Metric(*daemon_, "shmbroker_fd_channel_throttled_total");
  }
};

TEST_F(FrameRateTest, AFloodingConnectionIsPausedAndOthersAreServed) {
  ASSERT_EQ(Throttled(), 0);
  const int fd = ConnectRawFdChannel(daemon_->socket(), nullptr);
  ASSERT_GE(fd, 0);
  // Releases of handles that never existed, as fast as the socket takes
  // them: far more than the burst.
  int sent = 0;
  for (; sent < 40 * kFrameRate; ++sent) {
    fdchannel::Frame release = fdchannel::Encode(
        fdchannel::Release{uint64_t{1} << 40 | static_cast<uint64_t>(sent), 0});
    if (!fdchannel::SentWhole(
            fdchannel::SendFrame(fd, release, -1, MSG_DONTWAIT))) {
      break;  // its socket is full: the daemon is not reading it
    }
  }
  ASSERT_GT(sent, kFrameRate);
  EXPECT_TRUE(WaitFor("the flooding connection paused", [&](std::string* seen) {
    const double throttled = Throttled();
    *seen = absl::StrCat(throttled, " pauses");
    return throttled >= 1;
  }));
  // Meanwhile, another client is served as usual.
  client::AllocateOptions options;
  options.size = 4096;
  auto buffer = client_->Allocate(options);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  // The flooder hangs up: the rest of what it sent is read at once and its
  // connection ends.
  ::close(fd);
  EXPECT_TRUE(WaitForStatus(
      *client_, "only the test's client is connected",
      [](const client::DaemonStatus& s) { return s.clients == 1; }));
}

}  // namespace
}  // namespace shmbroker::testing
