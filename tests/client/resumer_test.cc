// The Resumer against a stand-in for the daemon's fd channel: a real
// SOCK_SEQPACKET listener that greets as shmbrokerd does, with nobody on
// the gRPC socket. So a resume never completes here (its Resume call finds
// no daemon): these tests check what happens before it, namely that the
// hang-up is noticed, the keeper pauses and gives up leases at their TTL,
// and each live hold is presented on the new channel with its very memory.
// Resuming against the real daemon is tests/integration/restart_test.cc.
#include "client/src/resumer.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/src/connection.h"
#include "common/default_socket.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_fd_channel.h"
#include "tests/common/proc_fds.h"

namespace shmbroker::client {
namespace {

using ::shmbroker::testing::InodeOf;
using ::testing::HasSubstr;

struct Presented {
  fdchannel::Present frame;
  UniqueFd fd;
};

// The next frame the client sent on `socket`, which must be a Present.
std::optional<Presented> ReadPresent(int socket) {
  pollfd p{socket, POLLIN, 0};
  if (::poll(&p, 1, absl::ToInt64Milliseconds(kDeadline)) != 1) {
    return std::nullopt;
  }
  fdchannel::Frame frame;
  fdchannel::Received got = fdchannel::RecvFrame(socket, &frame, 0);
  absl::StatusOr<fdchannel::FromClient> message =
      fdchannel::DecodeFromClient(got.envelope, frame);
  EXPECT_TRUE(message.ok()) << message.status();
  if (!message.ok()) return std::nullopt;
  const auto* present = std::get_if<fdchannel::Present>(&*message);
  EXPECT_NE(present, nullptr) << "frame type " << static_cast<int>(frame.type);
  if (present == nullptr) return std::nullopt;
  return Presented{*present, std::move(got.fd)};
}

class ResumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClientOptions options;
    options.socket_path = fake_.socket_path();
    options.timeout = absl::Seconds(2);
    options.on_lease_lost = [this](uint64_t id, const absl::Status& why) {
      absl::MutexLock lock(&mu_);
      lost_.emplace_back(id, why);
    };
    std::thread accept([this] { first_ = fake_.Accept(kFirstDefaultLease); });
    absl::StatusOr<std::shared_ptr<Connection>> c = Connection::Open(options);
    accept.join();
    ASSERT_TRUE(c.ok()) << c.status();
    connection_ = std::move(*c);
    ASSERT_TRUE(first_.valid());
  }

  static constexpr uint64_t kFirstDefaultLease = 100;
  FakeFdChannel fake_;
  UniqueFd first_;  // the daemon's end of the first connection
  std::shared_ptr<Connection> connection_;
  absl::Mutex mu_;
  std::vector<std::pair<uint64_t, absl::Status>> lost_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ResumerTest, AHangUpIsNoticedAndEachLiveHoldIsPresentedWithItsMemory) {
  UniqueFd dedicated(::memfd_create("dedicated", MFD_CLOEXEC));
  UniqueFd arena(::memfd_create("arena", MFD_CLOEXEC));
  HoldTable& holds = connection_->holds();
  holds.Register(11, kFirstDefaultLease, dedicated.get());
  holds.Register(12, kFirstDefaultLease, arena.get());
  holds.Register(13, kFirstDefaultLease, arena.get());
  holds.Unregister(holds.Register(14, kFirstDefaultLease, arena.get()));
  holds.Register(15, 999, arena.get());  // a lease nobody keeps

  first_.reset();  // the daemon dies: no ErrorText, just the close
  UniqueFd second = fake_.Accept(200);
  ASSERT_TRUE(second.valid()) << "the client did not reconnect";
  EXPECT_TRUE(connection_->keeper()->paused());

  std::vector<std::pair<uint64_t, ino_t>> seen;
  for (int i = 0; i < 3; ++i) {
    std::optional<Presented> p = ReadPresent(second.get());
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->frame.lease, kFirstDefaultLease);
    seen.emplace_back(p->frame.handle, InodeOf(p->fd.get()));
  }
  const ino_t d = InodeOf(dedicated.get());
  const ino_t a = InodeOf(arena.get());
  ASSERT_NE(d, a);
  EXPECT_EQ(seen, (std::vector<std::pair<uint64_t, ino_t>>{
                      {11, d}, {12, a}, {13, a}}));
  // Until the Resume call, which finds no daemon here, nothing else.
  pollfd p{second.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
}

TEST_F(ResumerTest, ALeaseIsGivenUpAtItsTtlWhileTheDaemonIsAway) {
  connection_->keeper()->Track(300, absl::Milliseconds(300));
  first_.reset();
  // A state, awaited with a deadline: no test time depends on the TTL.
  absl::MutexLock lock(&mu_);
  ASSERT_TRUE(mu_.AwaitWithTimeout(
      absl::Condition(
          +[](std::vector<std::pair<uint64_t, absl::Status>>* lost) {
            return !lost->empty();
          },
          &lost_),
      kDeadline))
      << "no loss reported";
  ASSERT_EQ(lost_.size(), 1u);  // the default lease's TTL was never learned
  EXPECT_EQ(lost_[0].first, 300u);
  EXPECT_EQ(lost_[0].second.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(lost_[0].second.message(),
              AllOf(HasSubstr("the daemon at " + fake_.socket_path() +
                              " went away (fd channel closed at "),
                    HasSubstr("did not come back within lease 300's TTL of "
                              "300ms")));
  EXPECT_THAT(connection_->LeaseStatus(300).message(), HasSubstr("went away"));
  EXPECT_TRUE(connection_->LeaseStatus(kFirstDefaultLease).ok());
}

TEST_F(ResumerTest, ReleasesWhileTheDaemonIsAwayAreKeptForTheResume) {
  first_.reset();
  UniqueFd second = fake_.Accept(200);  // so the client knows it is away
  ASSERT_TRUE(second.valid());
  connection_->ReleaseAsync(11, kFirstDefaultLease);
  std::vector<fdchannel::Release> pending = connection_->TakePendingReleases();
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].handle, 11u);
  EXPECT_EQ(pending[0].lease, kFirstDefaultLease);
}

TEST(ResumerDecisionTest, OnlyAConnectionTheDaemonEndedOnPurposeIsNotResumed) {
  EXPECT_TRUE(Resumer::DaemonWentAway(std::nullopt));  // SIGKILL
  EXPECT_TRUE(Resumer::DaemonWentAway(
      "shmbrokerd is stopping: this client connection ends"));
  EXPECT_FALSE(Resumer::DaemonWentAway(
      "shmbrokerd closed this client connection: lease 3 expired"));
  EXPECT_FALSE(Resumer::DaemonWentAway(
      "protocol error on the fd channel: got 12 bytes with 0 descriptors"));
}

}  // namespace
}  // namespace shmbroker::client
