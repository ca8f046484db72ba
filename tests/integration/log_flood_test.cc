// A client that floods the daemon with bad frames costs a few log lines, not
// megabytes, and the daemon keeps serving.
#include <sys/stat.h>
#include <unistd.h>

#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

// A daemon logging to a file, and how much that log grew since Mark().
class LogFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDaemon::Launch launch;
    launch.log_path = log_path_;
    // The raw fd channels below never renew their default leases; a flood
    // slowed down by a loaded machine must not outlast the default TTL (10 s).
    daemon_ = std::make_unique<TestDaemon>(
        std::vector<std::string>{"--lease_default_ttl=1h"}, "", launch);
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
  }
  void TearDown() override { ::unlink(log_path_.c_str()); }

  off_t LogSize() const {
    struct stat st {};
    return ::stat(log_path_.c_str(), &st) == 0 ? st.st_size : -1;
  }
  void Mark() { mark_ = LogSize(); }
  off_t GrowthSinceMark() const { return LogSize() - mark_; }
  // The whole log, once the daemon has stopped (and flushed it).
  std::string StopAndReadLog() {
    daemon_.reset();
    return ReadWholeFile(log_path_);
  }

  const std::string log_path_ = NewTempFile("flood-log");
  std::unique_ptr<TestDaemon> daemon_;
  off_t mark_ = 0;
};

TEST_F(LogFloodTest, BogusReleaseFramesAreRateLimitedInTheLog) {
  auto client = daemon_->Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  Mark();

  // Three connections, each releasing 50000 handles that never existed
  // (one warning each, before).
  constexpr int kFrames = 50000;
  for (int c = 0; c < 3; ++c) {
    const int fd = ConnectRawFdChannel(daemon_->socket(), nullptr);
    for (int i = 0; i < kFrames; ++i) {
      fdchannel::Frame release = fdchannel::Encode(
          fdchannel::Release{uint64_t{1} << 40 | static_cast<uint64_t>(i), 0});
      ASSERT_TRUE(
          fdchannel::SentWhole(fdchannel::SendFrame(fd, release, -1, 0)))
          << "frame " << i;
    }
    ::close(fd);
  }
  // Every frame was read once the daemon saw each connection end.
  EXPECT_TRUE(WaitForStatus(
      **client, "only the test's client is connected",
      [](const client::DaemonStatus& s) { return s.clients == 1; }));
  EXPECT_LT(GrowthSinceMark(), 64 * 1024);

  // Still serving.
  client::AllocateOptions options;
  options.size = 4096;
  EXPECT_TRUE((*client)->Allocate(options).ok());
  client->reset();
  const std::string log = StopAndReadLog();
  // The flood was heard about, once or a few times.
  EXPECT_THAT(log, HasSubstr("release over the fd channel"));
  EXPECT_LT(log.size(), 64u * 1024) << log.substr(0, 4096);
}

TEST_F(LogFloodTest, DeniedCallsAreRateLimitedInTheLog) {
  auto owner = daemon_->Connect();
  ASSERT_TRUE(owner.ok()) << owner.status();
  auto other = daemon_->Connect();
  ASSERT_TRUE(other.ok()) << other.status();
  client::AllocateOptions options;
  options.size = 4096;
  options.name = "held-by-owner";
  auto buffer = (*owner)->Allocate(options);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  Mark();

  // A connection that holds nothing releases it again and again: each call
  // is PERMISSION_DENIED (one warning each, before).
  constexpr int kCalls = 3000;
  for (int i = 0; i < kCalls; ++i) {
    auto denied = (*other)->ReleaseByName("held-by-owner");
    ASSERT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
        << i << ": " << denied.status();
  }
  EXPECT_LT(GrowthSinceMark(), 16 * 1024);
  EXPECT_THAT(ReadWholeFile(log_path_),
              HasSubstr("Release: PERMISSION_DENIED"));
}

// Protobuf logs an error for every request whose string field is not UTF-8;
// a client could send thousands a second. The daemon's log takes them
// through its rate limit, and each call is still answered.
TEST_F(LogFloodTest, RequestsProtobufComplainsAboutAreRateLimitedInTheLog) {
  Mark();

  // An AllocateRequest whose name (field 2) is the byte 0xff.
  const std::string bad_name("\x08\x80\x20\x12\x01\xff", 6);
  const int fd = ConnectRawFdChannel(daemon_->socket(), nullptr);
  constexpr int kCalls = 3000;
  for (int i = 0; i < kCalls; ++i) {
    const fdchannel::Call call{static_cast<uint64_t>(i + 1),
                               fdchannel::CallMethod::kAllocate, 1000,
                               bad_name};
    ASSERT_TRUE(
        fdchannel::SentWhole(fdchannel::SendMessage(fd, fdchannel::Encode(call),
                                                    call.payload, -1, 0),
                             call.payload.size()));
    fdchannel::Frame frame;
    std::string payload;
    fdchannel::Received got = fdchannel::RecvFrame(fd, &frame, &payload, 0);
    auto reply = fdchannel::DecodeFromDaemon(got.envelope, frame, payload);
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(std::get<fdchannel::Reply>(*reply).code,
              absl::StatusCode::kInvalidArgument);
  }
  ::close(fd);
  EXPECT_LT(GrowthSinceMark(), 16 * 1024);
  const std::string log = StopAndReadLog();
  EXPECT_THAT(log, HasSubstr("invalid UTF-8"));
}

}  // namespace
}  // namespace shmbroker::testing
