// The fd-channel protocol: every message survives Encode and Decode, the
// daemon refuses whatever a client may not send (naming why), and frames
// with their descriptors cross a real socketpair.
#include "common/fd_channel_protocol.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <variant>

#include "absl/container/flat_hash_set.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker::fdchannel {
namespace {

using ::testing::HasSubstr;

Envelope Whole(int fds = 0) {
  return Envelope{static_cast<ssize_t>(sizeof(Frame)), 0, fds};
}

TEST(FdChannelProtocolTest, ClientMessagesRoundTrip) {
  auto release = DecodeFromClient(Whole(), Encode(Release{7, 9}));
  ASSERT_TRUE(release.ok()) << release.status();
  EXPECT_EQ(std::get<Release>(*release).handle, 7u);
  EXPECT_EQ(std::get<Release>(*release).lease, 9u);
  for (bool writable : {false, true}) {
    auto forget =
        DecodeFromClient(Whole(), Encode(ForgetArena{{12, writable}}));
    ASSERT_TRUE(forget.ok()) << forget.status();
    EXPECT_EQ(std::get<ForgetArena>(*forget).arena, (ArenaKey{12, writable}));
  }
  auto seal = DecodeFromClient(Whole(), Encode(Seal{21}));
  ASSERT_TRUE(seal.ok()) << seal.status();
  EXPECT_EQ(std::get<Seal>(*seal).handle, 21u);
}

TEST(FdChannelProtocolTest, DaemonMessagesRoundTrip) {
  Hello hello{3, 4, {}, kFeatureCalls};
  for (size_t i = 0; i < hello.token.size(); ++i) hello.token[i] = i * 17;
  auto got = DecodeFromDaemon(Whole(), Encode(hello));
  ASSERT_TRUE(got.ok()) << got.status();
  const Hello& back = std::get<Hello>(*got);
  EXPECT_EQ(back.connection_id, 3u);
  EXPECT_EQ(back.default_lease, 4u);
  EXPECT_EQ(back.token, hello.token);
  EXPECT_TRUE(back.Serves(kFeatureCalls));
  // An older daemon's Hello (its text zeroed) names no feature.
  auto older = DecodeFromDaemon(Whole(), Encode(Hello{3, 4, {}, ""}));
  ASSERT_TRUE(older.ok()) << older.status();
  EXPECT_FALSE(std::get<Hello>(*older).Serves(kFeatureCalls));
  EXPECT_EQ(TokenToHex(back.token).size(), 32u);
  EXPECT_EQ(TokenToHex(back.token).substr(0, 6), "001122");

  auto fd = DecodeFromDaemon(Whole(1), Encode(FdGrant{5, 6}));
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(std::get<FdGrant>(*fd).grant_id, 5u);
  EXPECT_EQ(std::get<FdGrant>(*fd).handle, 6u);

  // An error text longer than the frame holds is cut, never overrun.
  auto error =
      DecodeFromDaemon(Whole(), Encode(ErrorText{std::string(500, 'x')}));
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(std::get<ErrorText>(*error).text, std::string(kTextBytes - 1, 'x'));
}

TEST(FdChannelProtocolTest, TheDaemonRefusesWhatAClientMayNotSend) {
  const Frame release = Encode(Release{1, 0});
  EXPECT_THAT(DecodeFromClient(Whole(1), release).status().message(),
              HasSubstr("got 168 bytes with 1 descriptors"));
  EXPECT_THAT(
      DecodeFromClient({static_cast<ssize_t>(sizeof(Frame)) - 1, 0, 0}, release)
          .status()
          .message(),
      HasSubstr("167 bytes"));
  EXPECT_FALSE(DecodeFromClient({sizeof(Frame), MSG_TRUNC, 0}, release).ok());
  Frame bad = release;
  bad.magic = 0;
  EXPECT_FALSE(DecodeFromClient(Whole(), bad).ok());
  bad = release;
  bad.version = kVersion + 1;
  EXPECT_THAT(DecodeFromClient(Whole(), bad).status().message(),
              HasSubstr("protocol error"));
  // Frames only the daemon sends.
  for (const Frame& f :
       {Encode(Hello{}), Encode(FdGrant{1, 1}), Encode(ErrorText{"x"})}) {
    absl::Status s = DecodeFromClient(Whole(), f).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
    EXPECT_THAT(s.message(), HasSubstr("not one a client may send"));
  }
  // A forget-arena mode other than 0 or 1.
  Frame forget = Encode(ForgetArena{{1, true}});
  forget.word1 = 2;
  EXPECT_FALSE(DecodeFromClient(Whole(), forget).ok());
  // A seal's second word is reserved: anything but 0 is refused, so that a
  // later protocol can give it a meaning.
  Frame seal = Encode(Seal{1});
  seal.word1 = 1;
  EXPECT_FALSE(DecodeFromClient(Whole(), seal).ok());
}

Envelope WithPayload(size_t payload, int fds = 0) {
  return Envelope{static_cast<ssize_t>(sizeof(Frame) + payload), 0, fds};
}

TEST(FdChannelProtocolTest, CallsAndRepliesRoundTripWithTheirPayloads) {
  const Call call{7, CallMethod::kAttach, 1500, std::string("request\0x", 9)};
  auto got = DecodeFromClient(WithPayload(9), Encode(call), call.payload);
  ASSERT_TRUE(got.ok()) << got.status();
  const auto& back = std::get<Call>(*got);
  EXPECT_EQ(back.id, 7u);
  EXPECT_EQ(back.method, CallMethod::kAttach);
  EXPECT_EQ(back.timeout_ms, 1500u);
  EXPECT_EQ(back.payload, call.payload);

  const Reply reply{7, absl::StatusCode::kDeadlineExceeded, "too late"};
  auto answer = DecodeFromDaemon(WithPayload(8), Encode(reply), reply.payload);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(std::get<Reply>(*answer).id, 7u);
  EXPECT_EQ(std::get<Reply>(*answer).code, absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(std::get<Reply>(*answer).payload, "too late");

  // An empty payload is a payload too (an AllocateRequest of defaults).
  EXPECT_TRUE(
      DecodeFromClient(Whole(), Encode(Call{1, CallMethod::kAllocate, 0, ""}))
          .ok());
}

TEST(FdChannelProtocolTest, ACallMustBeExactlyWhatItsFrameDeclares) {
  const Call call{1, CallMethod::kAllocate, 10, "abcd"};
  // Fewer or more bytes than declared, or a payload on a frame without one.
  EXPECT_FALSE(DecodeFromClient(WithPayload(3), Encode(call), "abc").ok());
  EXPECT_FALSE(DecodeFromClient(WithPayload(5), Encode(call), "abcde").ok());
  EXPECT_FALSE(
      DecodeFromClient(WithPayload(4), Encode(Release{1, 0}), "abcd").ok());
  // Over the most a call may carry, even if the frame says so.
  const Call big{1, CallMethod::kAllocate, 10,
                 std::string(kMaxPayloadBytes + 1, 'x')};
  EXPECT_FALSE(DecodeFromClient(WithPayload(big.payload.size()), Encode(big),
                                big.payload)
                   .ok());
  // No descriptor rides with a call, and only two methods exist.
  EXPECT_FALSE(
      DecodeFromClient(WithPayload(4, 1), Encode(call), call.payload).ok());
  Frame unknown = Encode(call);
  unknown.word1 = 3;
  absl::Status s = DecodeFromClient(WithPayload(4), unknown, "abcd").status();
  EXPECT_THAT(s.message(), HasSubstr("not one a client may send"));
  // A client may not send a reply, nor the daemon a call.
  EXPECT_FALSE(
      DecodeFromClient(Whole(), Encode(Reply{1, absl::StatusCode::kOk, ""}))
          .ok());
  EXPECT_FALSE(DecodeFromDaemon(WithPayload(4), Encode(call), "abcd").ok());
  // A reply's code is one of absl's.
  Frame odd = Encode(Reply{1, absl::StatusCode::kOk, ""});
  odd.word1 = 17;
  EXPECT_FALSE(DecodeFromDaemon(Whole(), odd).ok());
}

TEST(FdChannelProtocolTest, TheClientRefusesAnFdFrameWithoutItsFd) {
  EXPECT_FALSE(DecodeFromDaemon(Whole(0), Encode(FdGrant{1, 1})).ok());
  EXPECT_FALSE(DecodeFromDaemon(Whole(), Encode(Release{1, 1})).ok());
  EXPECT_FALSE(DecodeFromDaemon({10, 0, 0}, Encode(Hello{})).ok());
}

TEST(FdChannelProtocolTest, ArenaKeysAreDistinctPerMode) {
  absl::flat_hash_set<ArenaKey> keys = {{1, false}, {1, true}, {2, false}};
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_TRUE(keys.contains(ArenaKey{1, true}));
  EXPECT_FALSE(keys.contains(ArenaKey{2, true}));
}

TEST(FdChannelIoTest, AFrameAndItsDescriptorCrossASocketpair) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  UniqueFd memfd(::memfd_create("fd-channel-test", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  ASSERT_EQ(::ftruncate(memfd.get(), 4096), 0);

  ASSERT_TRUE(
      SentWhole(SendFrame(a.get(), Encode(FdGrant{8, 9}), memfd.get(), 0)));
  Frame frame;
  Received got = RecvFrame(b.get(), &frame, 0);
  ASSERT_EQ(got.envelope.fd_count, 1);
  ASSERT_TRUE(got.fd.valid());
  auto message = DecodeFromDaemon(got.envelope, frame);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(std::get<FdGrant>(*message).grant_id, 8u);
  // The very same object arrived, close-on-exec.
  struct stat sent {
  }, received{};
  ASSERT_EQ(::fstat(memfd.get(), &sent), 0);
  ASSERT_EQ(::fstat(got.fd.get(), &received), 0);
  EXPECT_EQ(sent.st_ino, received.st_ino);
  EXPECT_EQ(sent.st_dev, received.st_dev);
  EXPECT_NE(::fcntl(got.fd.get(), F_GETFD) & FD_CLOEXEC, 0);

  // A frame without a descriptor, and end of stream.
  ASSERT_TRUE(SentWhole(SendFrame(a.get(), Encode(Release{1, 2}), -1, 0)));
  got = RecvFrame(b.get(), &frame, 0);
  EXPECT_EQ(got.envelope.fd_count, 0);
  EXPECT_FALSE(got.fd.valid());
  EXPECT_TRUE(DecodeFromClient(got.envelope, frame).ok());
  a.reset();
  EXPECT_EQ(RecvFrame(b.get(), &frame, 0).envelope.bytes, 0);
}

TEST(FdChannelIoTest, ACallAndItsPayloadCrossASocketpairAsOneMessage) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  const Call call{3, CallMethod::kAllocate, 99, std::string(1000, 'p')};
  ASSERT_TRUE(
      SentWhole(SendMessage(a.get(), Encode(call), call.payload, -1, 0), 1000));
  Frame frame;
  std::string payload;
  Received got = RecvFrame(b.get(), &frame, &payload, 0);
  auto message = DecodeFromClient(got.envelope, frame, payload);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(std::get<Call>(*message).payload, call.payload);

  // A reader that expects no payload sees the message cut short, and the
  // decoder refuses it.
  ASSERT_TRUE(
      SentWhole(SendMessage(a.get(), Encode(call), call.payload, -1, 0), 1000));
  got = RecvFrame(b.get(), &frame, 0);
  EXPECT_NE(got.envelope.msg_flags & MSG_TRUNC, 0);
  EXPECT_FALSE(DecodeFromClient(got.envelope, frame).ok());
}

TEST(FdChannelIoTest, SendingToAClosedPeerFailsWithoutSigpipe) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]);
  ::close(pair[1]);
  EXPECT_FALSE(SentWhole(SendFrame(a.get(), Encode(Release{1, 0}), -1, 0)));
  EXPECT_EQ(errno, EPIPE);
}

}  // namespace
}  // namespace shmbroker::fdchannel
