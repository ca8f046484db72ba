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

TEST(LogFloodTest, BogusReleaseFramesAreRateLimitedInTheLog) {
  const std::string log_path = NewTempFile("flood-log");
  TestDaemon::Launch launch;
  launch.log_path = log_path;
  auto daemon =
      std::make_unique<TestDaemon>(std::vector<std::string>{}, "", launch);
  ASSERT_TRUE(daemon->started()) << daemon->startup_output();
  auto client = daemon->Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  struct stat st {};
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  const off_t before = st.st_size;

  // Three connections, each releasing 50000 handles that never existed
  // (one warning each, before).
  constexpr int kFrames = 50000;
  for (int c = 0; c < 3; ++c) {
    const int fd = ConnectRawFdChannel(daemon->socket(), nullptr);
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
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  EXPECT_LT(st.st_size - before, 64 * 1024);

  // Still serving.
  client::AllocateOptions options;
  options.size = 4096;
  EXPECT_TRUE((*client)->Allocate(options).ok());
  client->reset();
  daemon.reset();
  const std::string log = ReadWholeFile(log_path);
  // The flood was heard about, once or a few times.
  EXPECT_THAT(log, HasSubstr("release over the fd channel"));
  EXPECT_LT(log.size(), 64u * 1024) << log.substr(0, 4096);
  ::unlink(log_path.c_str());
}

TEST(LogFloodTest, DeniedCallsAreRateLimitedInTheLog) {
  const std::string log_path = NewTempFile("denied-log");
  TestDaemon::Launch launch;
  launch.log_path = log_path;
  auto daemon =
      std::make_unique<TestDaemon>(std::vector<std::string>{}, "", launch);
  ASSERT_TRUE(daemon->started()) << daemon->startup_output();
  auto owner = daemon->Connect();
  ASSERT_TRUE(owner.ok()) << owner.status();
  auto other = daemon->Connect();
  ASSERT_TRUE(other.ok()) << other.status();
  client::AllocateOptions options;
  options.size = 4096;
  options.name = "held-by-owner";
  auto buffer = (*owner)->Allocate(options);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  struct stat st {};
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  const off_t before = st.st_size;

  // A connection that holds nothing releases it again and again: each call
  // is PERMISSION_DENIED (one warning each, before).
  constexpr int kCalls = 3000;
  for (int i = 0; i < kCalls; ++i) {
    auto denied = (*other)->ReleaseByName("held-by-owner");
    ASSERT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
        << i << ": " << denied.status();
  }
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  EXPECT_LT(st.st_size - before, 16 * 1024);
  const std::string log = ReadWholeFile(log_path);
  EXPECT_THAT(log, HasSubstr("Release: PERMISSION_DENIED"));
  ::unlink(log_path.c_str());
}

// Protobuf logs an error for every request whose string field is not UTF-8;
// a client could send thousands a second. The daemon's log takes them
// through its rate limit, and each call is still answered.
TEST(LogFloodTest, RequestsProtobufComplainsAboutAreRateLimitedInTheLog) {
  const std::string log_path = NewTempFile("protobuf-log");
  TestDaemon::Launch launch;
  launch.log_path = log_path;
  auto daemon =
      std::make_unique<TestDaemon>(std::vector<std::string>{}, "", launch);
  ASSERT_TRUE(daemon->started()) << daemon->startup_output();
  struct stat st {};
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  const off_t before = st.st_size;

  // An AllocateRequest whose name (field 2) is the byte 0xff.
  const std::string bad_name("\x08\x80\x20\x12\x01\xff", 6);
  const int fd = ConnectRawFdChannel(daemon->socket(), nullptr);
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
  ASSERT_EQ(::stat(log_path.c_str(), &st), 0);
  EXPECT_LT(st.st_size - before, 16 * 1024);
  daemon.reset();
  const std::string log = ReadWholeFile(log_path);
  EXPECT_THAT(log, HasSubstr("invalid UTF-8"));
  ::unlink(log_path.c_str());
}

}  // namespace
}  // namespace shmbroker::testing
