// Allocate and Attach as calls on the fd channel (common/fd_channel_protocol.h,
// "Why calls on the fd channel"): the library makes them there by default,
// gRPC still serves them when the option is off, a call that gives up waiting
// does not leave its grant's hold behind, and a raw client's bad calls get a
// clear answer (or, for what breaks the protocol, the connection closed).
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/client.h"
#include "shmbroker/v1/broker.pb.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

class FdCallsTest : public DaemonTest {
 protected:
  absl::StatusOr<std::unique_ptr<client::Client>> ConnectWith(
      bool calls_on_fd_channel, absl::Duration timeout = absl::Seconds(10)) {
    client::ClientOptions options;
    options.socket_path = daemon_->socket();
    options.timeout = timeout;
    options.calls_on_fd_channel = calls_on_fd_channel;
    return client::Client::Connect(options);
  }

  double FdCalls(const std::string& method) {
    return Metric(*daemon_, "shmbroker_fd_channel_calls_total{method=\"" +
                                method + "\"}");
  }

  // Sends a raw Call and reads frames until its Reply (keeping a grant's
  // fd, if one comes first, in `*fd`).
  static fdchannel::Reply RawCall(int sock, fdchannel::CallMethod method,
                                  const std::string& payload,
                                  UniqueFd* fd = nullptr) {
    const fdchannel::Call call{42, method, 5000, payload};
    EXPECT_TRUE(fdchannel::SentWhole(
        fdchannel::SendMessage(sock, fdchannel::Encode(call), call.payload, -1,
                               0),
        payload.size()));
    for (;;) {
      fdchannel::Frame frame;
      std::string rest;
      fdchannel::Received got = fdchannel::RecvFrame(sock, &frame, &rest, 0);
      auto message = fdchannel::DecodeFromDaemon(got.envelope, frame, rest);
      if (!message.ok()) {
        ADD_FAILURE() << message.status();
        return {};
      }
      if (auto* reply = std::get_if<fdchannel::Reply>(&*message)) {
        EXPECT_EQ(reply->id, 42u);
        return *reply;
      }
      if (fd != nullptr && got.fd.valid()) *fd = std::move(got.fd);
    }
  }
};

TEST_F(FdCallsTest, TheLibraryAllocatesAndAttachesOnTheFdChannel) {
  const double allocates = FdCalls("Allocate");
  const double attaches = FdCalls("Attach");
  ASSERT_GE(allocates, 0);
  auto producer =
      client_->Allocate({4096, "fd-call", client::Backing::kMemfd, {}});
  ASSERT_TRUE(producer.ok()) << producer.status();
  std::memcpy(producer->data(), "hello", 5);
  auto consumer = ConnectWith(true);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  auto got = (*consumer)->Attach("fd-call");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got->data()), 5),
            "hello");
  EXPECT_EQ(FdCalls("Allocate"), allocates + 1);
  EXPECT_EQ(FdCalls("Attach"), attaches + 1);
  // The same errors as over gRPC: a missing buffer, a bad size.
  EXPECT_EQ((*consumer)->Attach("nobody").status().code(),
            absl::StatusCode::kNotFound);
  auto zero = client_->Allocate({0, "", client::Backing::kMemfd, {}});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("bad size"));
}

TEST_F(FdCallsTest, WithTheOptionOffTheSameCallsGoOverGrpc) {
  auto grpc_only = ConnectWith(false);
  ASSERT_TRUE(grpc_only.ok()) << grpc_only.status();
  const double before = FdCalls("Allocate") + FdCalls("Attach");
  auto made =
      (*grpc_only)->Allocate({4096, "over-grpc", client::Backing::kMemfd, {}});
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(made->Seal().ok());
  client::WaitOptions wait;
  wait.until = client::WaitOptions::Until::kSealed;
  wait.timeout = absl::Seconds(5);
  auto got = (*grpc_only)->AttachWhen("over-grpc", wait);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(FdCalls("Allocate") + FdCalls("Attach"), before);
}

// The daemon is stopped (SIGSTOP) while a call waits for its reply, so the
// call gives up; the reply that comes once the daemon runs again grants a
// hold nobody asked for any more, which the library gives back.
TEST_F(FdCallsTest, AReplyThatComesAfterItsCallGaveUpGivesItsHoldBack) {
  auto made = client_->Allocate({4096, "late", client::Backing::kMemfd, {}});
  ASSERT_TRUE(made.ok()) << made.status();
  auto impatient = ConnectWith(true, absl::Milliseconds(300));
  ASSERT_TRUE(impatient.ok()) << impatient.status();
  // Both gRPC connections are up first, so that the stop below delays the
  // call's reply and not its connection.
  ASSERT_TRUE(client_->Ping().ok());
  ASSERT_TRUE((*impatient)->Ping().ok());
  ASSERT_TRUE(StopProcess(daemon_->pid()));
  auto gave_up = (*impatient)->Attach("late");
  ::kill(daemon_->pid(), SIGCONT);
  ASSERT_EQ(gave_up.status().code(), absl::StatusCode::kDeadlineExceeded)
      << gave_up.status();
  // The late reply is read by the next call on that channel.
  ASSERT_TRUE(
      WaitFor("the late grant's hold given back", [&](std::string* seen) {
        auto again = (*impatient)->Attach("late");
        if (!again.ok()) {
          *seen = again.status().ToString();
          return false;
        }
        auto info = client_->Describe("late");
        if (!info.ok()) return false;
        *seen = absl::StrCat(info->holders, " holders");
        // The producer's hold and `again`'s, not the orphan's.
        return info->holders == 2;
      }));
}

TEST_F(FdCallsTest, ARawClientsBadCallIsAnsweredAndTheConnectionLives) {
  const int sock = ConnectRawFdChannel(daemon_->socket(), nullptr);
  fdchannel::Reply reply = RawCall(sock, fdchannel::CallMethod::kAllocate,
                                   std::string("\xff\xff\xff", 3));
  EXPECT_EQ(reply.code, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reply.payload, HasSubstr("malformed AllocateRequest"));

  // A good call on the same connection: its fd first, then the reply.
  v1::AllocateRequest request;
  request.set_size(4096);
  request.set_name("raw-call");
  UniqueFd fd;
  reply = RawCall(sock, fdchannel::CallMethod::kAllocate,
                  request.SerializeAsString(), &fd);
  ASSERT_EQ(reply.code, absl::StatusCode::kOk) << reply.payload;
  v1::AllocateResponse response;
  ASSERT_TRUE(response.ParseFromString(reply.payload));
  EXPECT_EQ(response.buffer().name(), "raw-call");
  EXPECT_TRUE(fd.valid());

  // A limit names its flag, as over gRPC.
  request.set_name("");
  request.set_size(uint64_t{1} << 50);
  reply = RawCall(sock, fdchannel::CallMethod::kAllocate,
                  request.SerializeAsString());
  EXPECT_EQ(reply.code, absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(reply.payload, HasSubstr("--capacity"));

  // A waiting Attach needs a name.
  v1::AttachRequest attach;
  attach.set_handle(1);
  attach.set_wait(v1::WAIT_FOR_SEALED);
  reply =
      RawCall(sock, fdchannel::CallMethod::kAttach, attach.SerializeAsString());
  EXPECT_EQ(reply.code, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reply.payload, HasSubstr("needs a buffer name"));
  ::close(sock);  // its hold on raw-call goes with it
  EXPECT_TRUE(WaitForStatus(
      *client_, "raw-call reclaimed",
      [](const client::DaemonStatus& s) { return s.buffers == 0; }));
}

TEST_F(FdCallsTest, AnUnknownMethodOrAnOversizedCallIsAProtocolError) {
  for (int variant = 0; variant < 2; ++variant) {
    const int sock = ConnectRawFdChannel(daemon_->socket(), nullptr);
    fdchannel::Call call{1, fdchannel::CallMethod::kAllocate, 1000, "x"};
    fdchannel::Frame frame = fdchannel::Encode(call);
    if (variant == 0) {
      frame.word1 = 99;
      ASSERT_GT(fdchannel::SendMessage(sock, frame, call.payload, -1, 0), 0);
    } else {
      // Declares and sends more than a call may carry.
      call.payload.assign(fdchannel::kMaxPayloadBytes + 1, 'x');
      frame = fdchannel::Encode(call);
      ASSERT_GT(fdchannel::SendMessage(sock, frame, call.payload, -1, 0), 0);
    }
    fdchannel::Frame error;
    fdchannel::Received got = fdchannel::RecvFrame(sock, &error, 0);
    EXPECT_EQ(got.envelope.bytes, static_cast<ssize_t>(sizeof(error)));
    EXPECT_EQ(error.type, fdchannel::FrameType::kError) << variant;
    error.text[fdchannel::kTextBytes - 1] = '\0';
    EXPECT_THAT(std::string(error.text), HasSubstr("protocol error"));
    fdchannel::Frame after;
    EXPECT_EQ(fdchannel::RecvFrame(sock, &after, 0).envelope.bytes, 0);
    ::close(sock);
  }
  EXPECT_TRUE(client_->Ping().ok());
}

}  // namespace
}  // namespace shmbroker::testing
