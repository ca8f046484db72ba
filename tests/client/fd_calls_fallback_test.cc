// Which way the library sends Allocate, against a stand-in daemon: on the
// fd channel only to a daemon whose Hello names the "calls" feature, and
// over gRPC to an older one, which would take a call frame for a protocol
// error and close the connection. (Against the real daemon:
// tests/integration/fd_calls_test.cc.)
#include <poll.h>

#include <memory>
#include <string>
#include <thread>

#include "client/src/connection.h"
#include "client/src/grants.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "gtest/gtest.h"
#include "tests/client/fake_fd_channel.h"

namespace shmbroker::client {
namespace {

class FdCallsFallbackTest : public ::testing::TestWithParam<bool> {
 protected:
  // Connects a Connection to the stand-in, which names `calls` or not.
  void Open(bool calls) {
    ClientOptions options;
    options.socket_path = fake_.socket_path();
    options.timeout = absl::Seconds(2);
    std::thread accept([&] {
      daemon_end_ = fake_.Accept(7, calls ? fdchannel::kFeatureCalls : "");
    });
    absl::StatusOr<std::shared_ptr<Connection>> c = Connection::Open(options);
    accept.join();
    ASSERT_TRUE(c.ok()) << c.status();
    connection_ = std::move(*c);
  }

  FakeFdChannel fake_;
  UniqueFd daemon_end_;
  std::shared_ptr<Connection> connection_;
};

TEST_P(FdCallsFallbackTest, AllocateGoesOnTheFdChannelOnlyIfTheDaemonServesIt) {
  const bool calls = GetParam();
  ASSERT_NO_FATAL_FAILURE(Open(calls));
  ASSERT_EQ(connection_->fd_channel()->hello().Serves(fdchannel::kFeatureCalls),
            calls);
  std::thread daemon;
  if (calls) {
    // Answer the call as a daemon would refuse it.
    daemon = std::thread([&] {
      pollfd p{daemon_end_.get(), POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, absl::ToInt64Milliseconds(kDeadline)), 1);
      fdchannel::Frame frame;
      std::string payload;
      fdchannel::Received got =
          fdchannel::RecvFrame(daemon_end_.get(), &frame, &payload, 0);
      auto message = fdchannel::DecodeFromClient(got.envelope, frame, payload);
      ASSERT_TRUE(message.ok()) << message.status();
      const auto* call = std::get_if<fdchannel::Call>(&*message);
      ASSERT_NE(call, nullptr);
      EXPECT_EQ(call->method, fdchannel::CallMethod::kAllocate);
      v1::AllocateRequest request;
      ASSERT_TRUE(request.ParseFromString(call->payload));
      EXPECT_EQ(request.size(), 4096u);
      const fdchannel::Reply reply{call->id,
                                   absl::StatusCode::kResourceExhausted,
                                   "over capacity (--capacity)"};
      EXPECT_TRUE(fdchannel::SentWhole(
          fdchannel::SendMessage(daemon_end_.get(), fdchannel::Encode(reply),
                                 reply.payload, -1, 0),
          reply.payload.size()));
    });
  }
  v1::AllocateRequest request;
  request.set_size(4096);
  absl::StatusOr<Buffer> buffer = Grants::Allocate(connection_, request);
  if (daemon.joinable()) daemon.join();
  if (calls) {
    // The daemon's answer, as it sent it.
    EXPECT_EQ(buffer.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(buffer.status().message(), "over capacity (--capacity)");
  } else {
    // Over gRPC, where nobody listens here; nothing came on the fd channel.
    EXPECT_EQ(buffer.status().code(), absl::StatusCode::kUnavailable)
        << buffer.status();
    pollfd p{daemon_end_.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "a frame reached an older daemon";
  }
}

INSTANTIATE_TEST_SUITE_P(Daemons, FdCallsFallbackTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "ServesCalls" : "Older";
                         });

TEST(HelloTest, FeaturesAreWholeWords) {
  fdchannel::Hello hello;
  EXPECT_FALSE(hello.Serves("calls"));
  hello.features = "calls";
  EXPECT_TRUE(hello.Serves("calls"));
  hello.features = "watch calls later";
  EXPECT_TRUE(hello.Serves("calls"));
  hello.features = "callsx xcalls";
  EXPECT_FALSE(hello.Serves("calls"));
}

}  // namespace
}  // namespace shmbroker::client
