// Bad input gets the right gRPC status and a message naming the cause, and
// leaves the daemon healthy: nothing crashes, hangs, leaks or is lost.
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

class BadInputTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    // One uid fills the capacity here: no per-uid quota below it.
    return {"--capacity=1MiB", "--max_bytes_per_uid=1MiB",
            "--max_holds_per_lease=8"};
  }

  void TearDown() override {
    // Whatever happened, the daemon still serves and nothing leaked.
    {
      auto fresh = daemon_->Connect();
      ASSERT_TRUE(fresh.ok()) << fresh.status();
      auto buffer = (*fresh)->Allocate(
          {4096, "after-bad-input", client::Backing::kMemfd, {}});
      EXPECT_TRUE(buffer.ok()) << buffer.status();
    }  // the buffer, then its client, go: and their holds with them
    client_.reset();
    {
      auto observer = daemon_->Connect();
      ASSERT_TRUE(observer.ok()) << observer.status();
      EXPECT_TRUE(WaitForStatus(**observer, "every buffer reclaimed",
                                [](const client::DaemonStatus& s) {
                                  return s.buffers == 0 &&
                                         s.allocated_bytes == 0;
                                }));
    }
    DaemonTest::TearDown();
  }

  absl::StatusCode AllocateCode(uint64_t size, const std::string& name,
                                std::string* message) {
    auto b = client_->Allocate({size, name, client::Backing::kMemfd, {}});
    *message = std::string(b.status().message());
    return b.status().code();
  }

  int RawFdChannel(std::string* token = nullptr) {
    return ConnectRawFdChannel(daemon_->socket(), token);
  }

  // Reads what the daemon says after a protocol error: an error frame, then
  // end of stream.
  std::string ReadErrorThenEof(int fd) {
    fdchannel::Frame frame;
    fdchannel::Received got = fdchannel::RecvFrame(fd, &frame, 0);
    EXPECT_EQ(got.envelope.bytes, static_cast<ssize_t>(sizeof(frame)));
    EXPECT_EQ(frame.type, fdchannel::FrameType::kError);
    frame.text[fdchannel::kTextBytes - 1] = '\0';
    fdchannel::Frame after;
    EXPECT_EQ(fdchannel::RecvFrame(fd, &after, 0).envelope.bytes, 0);
    return frame.text;
  }
};

TEST_F(BadInputTest, SizeZeroIsInvalidArgument) {
  std::string message;
  EXPECT_EQ(AllocateCode(0, "", &message), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(message, HasSubstr("bad size"));
}

TEST_F(BadInputTest, OverCapacityIsResourceExhaustedNamingTheLimit) {
  std::string message;
  EXPECT_EQ(AllocateCode((1 << 20) + 1, "", &message),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(message, HasSubstr("capacity"));
  auto most = client_->Allocate({1 << 19, "", client::Backing::kMemfd, {}});
  ASSERT_TRUE(most.ok()) << most.status();
  EXPECT_EQ(AllocateCode((1 << 19) + 1, "", &message),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(message, HasSubstr("over capacity"));
  EXPECT_EQ(AllocateCode(1 << 19, "", &message), absl::StatusCode::kOk);
}

TEST_F(BadInputTest, BadNamesAreInvalidArgument) {
  for (const std::string& name :
       {std::string("../etc/passwd"), std::string("a/b"),
        std::string(".hidden"), std::string("-flag"), std::string(129, 'x'),
        std::string("sp ace"), std::string("nul\0byte", 8),
        std::string("caf\xc3\xa9")}) {
    std::string message;
    EXPECT_EQ(AllocateCode(4096, name, &message),
              absl::StatusCode::kInvalidArgument)
        << name;
    EXPECT_THAT(message, HasSubstr("bad name")) << name;
  }
  auto attach = client_->Attach("../../dev/shm/x");
  EXPECT_EQ(attach.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BadInputTest, TakenNameIsAlreadyExists) {
  auto first = client_->Allocate({4096, "taken", client::Backing::kMemfd, {}});
  ASSERT_TRUE(first.ok()) << first.status();
  std::string message;
  EXPECT_EQ(AllocateCode(4096, "taken", &message),
            absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(message, HasSubstr("taken"));
}

TEST_F(BadInputTest, UnknownHandlesAndNamesAreNotFound) {
  EXPECT_EQ(client_->AttachHandle(987654).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Attach("nobody-made-this").status().code(),
            absl::StatusCode::kNotFound);
  auto released = client_->Release(987654);
  EXPECT_EQ(released.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(released.status().message(), HasSubstr("no such buffer"));
}

TEST_F(BadInputTest, ReleasingAnotherClientsHoldIsPermissionDenied) {
  auto other = daemon_->Connect();
  ASSERT_TRUE(other.ok());
  auto theirs =
      (*other)->Allocate({4096, "theirs", client::Backing::kMemfd, {}});
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  auto released = client_->Release(theirs->handle());
  EXPECT_EQ(released.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(released.status().message(), HasSubstr("holds no reference"));
  EXPECT_EQ((*other)->Describe("theirs")->holders, 1u);
}

TEST_F(BadInputTest, HoldLimitPerLeaseIsResourceExhausted) {
  std::vector<client::Buffer> held;
  for (int i = 0; i < 8; ++i) {
    auto b = client_->Allocate({1, "", client::Backing::kMemfd, {}});
    ASSERT_TRUE(b.ok()) << b.status();
    held.push_back(std::move(*b));
  }
  std::string message;
  EXPECT_EQ(AllocateCode(1, "", &message),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(message, HasSubstr("max_holds_per_lease"));
}

TEST_F(BadInputTest, GarbageOnTheFdChannelClosesOnlyThatConnection) {
  const int fd = RawFdChannel();
  const char garbage[] = "GET / HTTP/1.1\r\n\r\n";
  ASSERT_GT(::send(fd, garbage, sizeof(garbage), 0), 0);
  EXPECT_THAT(ReadErrorThenEof(fd), HasSubstr("protocol error"));
  ::close(fd);
  EXPECT_TRUE(client_->Ping().ok());
}

TEST_F(BadInputTest, DescriptorsSentToTheDaemonAreRefusedAndClosed) {
  const int fd = RawFdChannel();
  fdchannel::Frame release = fdchannel::Encode(fdchannel::Release{1, 0});
  ASSERT_GT(fdchannel::SendFrame(fd, release, STDERR_FILENO, 0), 0);
  EXPECT_THAT(ReadErrorThenEof(fd), HasSubstr("descriptors"));
  ::close(fd);
}

TEST_F(BadInputTest, AOneWaySealOfABufferNotHeldIsLoggedNotAProtocolError) {
  const int fd = RawFdChannel();
  ASSERT_TRUE(fdchannel::SentWhole(fdchannel::SendFrame(
      fd, fdchannel::Encode(fdchannel::Seal{uint64_t{1} << 40}), -1, 0)));
  // Frames are applied in order: the garbage after the seal is what closes
  // the connection, so the seal itself was taken as a valid frame.
  const char garbage[] = "not a frame";
  ASSERT_GT(::send(fd, garbage, sizeof(garbage), 0), 0);
  EXPECT_THAT(ReadErrorThenEof(fd), HasSubstr("got 12 bytes"));
  ::close(fd);
  EXPECT_TRUE(client_->Ping().ok());
}

TEST_F(BadInputTest, OversizedAndWrongVersionFramesAreProtocolErrors) {
  for (int variant = 0; variant < 2; ++variant) {
    const int fd = RawFdChannel();
    fdchannel::Frame frame = fdchannel::Encode(fdchannel::Release{1, 0});
    if (variant == 0) {
      char big[sizeof(frame) + 64] = {};
      std::memcpy(big, &frame, sizeof(frame));
      ASSERT_GT(::send(fd, big, sizeof(big), 0), 0);
    } else {
      frame.version = 99;
      ASSERT_GT(fdchannel::SendFrame(fd, frame, -1, 0), 0);
    }
    EXPECT_THAT(ReadErrorThenEof(fd), HasSubstr("protocol error"));
    ::close(fd);
  }
}

TEST_F(BadInputTest, RawGrpcCallsWithoutOrWithABogusSessionAreRefused) {
  auto channel = grpc::CreateChannel("unix:" + daemon_->socket(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Broker::NewStub(channel);
  v1::AllocateRequest request;
  request.set_size(4096);
  v1::AllocateResponse response;
  {
    grpc::ClientContext ctx;
    grpc::Status s = stub->Allocate(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("no client connection"));
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata(fdchannel::kConnectionTokenKey, std::string(32, 'a'));
    grpc::Status s = stub->Allocate(&ctx, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    // Read-only calls work without a session and see the caller's identity.
    grpc::ClientContext ctx;
    v1::StatusResponse status;
    ASSERT_TRUE(stub->Status(&ctx, v1::StatusRequest(), &status).ok());
    EXPECT_EQ(status.caller_pid(), ::getpid());
    EXPECT_EQ(status.caller_uid(), ::getuid());
    EXPECT_FALSE(status.caller_has_connection());
  }
  {
    grpc::ClientContext ctx;
    v1::ListRequest list;
    list.set_page_token("not-a-token");
    v1::ListResponse listed;
    grpc::Status s = stub->List(&ctx, list, &listed);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("page_token"));
  }
  {
    grpc::ClientContext ctx;
    v1::DescribeRequest describe;  // neither handle nor name
    v1::DescribeResponse described;
    grpc::Status s = stub->Describe(&ctx, describe, &described);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(BadInputTest, BadEnumValuesAreInvalidArgument) {
  // Values the library cannot send, sent raw with a valid session of this
  // process.
  std::string token;
  const int fd = RawFdChannel(&token);
  auto stub = v1::Broker::NewStub(grpc::CreateChannel(
      "unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
  auto allocate = [&](const v1::AllocateRequest& request) {
    grpc::ClientContext ctx;
    ctx.AddMetadata(fdchannel::kConnectionTokenKey, token);
    v1::AllocateResponse response;
    return stub->Allocate(&ctx, request, &response);
  };
  v1::AllocateRequest request;
  request.set_size(4096);
  request.set_backing(static_cast<v1::Backing>(42));
  grpc::Status s = allocate(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("bad backing"));

  request.set_backing(v1::BACKING_MEMFD);
  request.add_share()->set_scope(v1::SHARE_SCOPE_UNSPECIFIED);
  s = allocate(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("bad share"));

  request.clear_share();
  request.mutable_wait_for_room()->set_seconds(-1);
  s = allocate(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("bad wait_for_room: it must not be negative"));
  request.mutable_wait_for_room()->set_seconds(int64_t{1} << 50);
  s = allocate(request);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("bad wait_for_room: bad duration"));

  request.clear_wait_for_room();
  s = allocate(request);  // the same session, valid now
  EXPECT_TRUE(s.ok()) << s.error_message();
  ::close(fd);  // closing the channel reclaims that buffer
}

TEST_F(BadInputTest, TooManyShareRulesAreInvalidArgument) {
  auto bad_share = client_->Allocate(
      {4096, "", client::Backing::kMemfd,
       std::vector<client::ShareRule>(17, client::ShareRule{})});
  EXPECT_EQ(bad_share.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_share.status().message(), HasSubstr("share"));
}

}  // namespace
}  // namespace shmbroker::testing
