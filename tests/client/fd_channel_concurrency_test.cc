// The client library's end of the fd channel (client/src/fd_channel.h)
// under several threads at once, as an application's threads use one
// Client: each makes calls on the channel and claims its grant's fd, some
// give up on their call at once (its reply and fd, when they come, go to
// the orphan handler, which must close the fd), and all of them send
// one-way frames meanwhile. The daemon's end is a stand-in thread that
// answers a few calls at a time in reverse order, so that whichever thread
// is the reader mostly reads what another is waiting for.
//
// Checked: every call is answered to its own caller with its own fd (the
// memfd named after it), or gave up with DEADLINE_EXCEEDED and reached the
// orphan handler; no fd is left open. It links the channel's source and
// common/ only, no gRPC. Under ThreadSanitizer (scripts/test.sh;
// docs/testing.md, "ThreadSanitizer") it checks the channel's locking;
// else it is a test in the suite. SHMBROKER_CLIENT_FD_CHANNEL_CALLS sets
// the calls per thread.
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/src/fd_channel.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"
#include "tests/client/fake_fd_channel.h"
#include "tests/common/proc_fds.h"

namespace shmbroker::client {
namespace {

constexpr int kThreads = 4;
// The stand-in answers at most this many waiting calls at a time.
constexpr size_t kBatch = 8;

int CallsPerThread() {
  const char* env = std::getenv("SHMBROKER_CLIENT_FD_CHANNEL_CALLS");
  return env != nullptr ? std::max(1, std::atoi(env)) : 200;
}

// What the fd `fd` is: "/memfd:call-7 (deleted)" for the stand-in's.
std::string FdTarget(int fd) {
  std::error_code ec;
  return std::filesystem::read_symlink(absl::StrCat("/proc/self/fd/", fd), ec)
      .string();
}

std::string MemfdName(uint64_t call) { return absl::StrCat("call-", call); }

// The daemon's end: answers each Call with an FdGrant (a memfd named after
// the call) and then its Reply (the call's id as payload), the calls that
// are waiting at once in reverse order. Counts the Release frames. Returns,
// and closes its end, when the client hangs up.
class StandIn {
 public:
  explicit StandIn(UniqueFd socket) : socket_(std::move(socket)) {}

  void Run() {
    for (bool open = true; open;) {
      std::vector<uint64_t> calls;
      // Block for the first frame, then take what else is waiting.
      for (int flags = 0; calls.size() < kBatch; flags = MSG_DONTWAIT) {
        fdchannel::Frame frame;
        std::string payload;
        fdchannel::Received got =
            fdchannel::RecvFrame(socket_.get(), &frame, &payload, flags);
        if (got.envelope.bytes == 0 || (got.envelope.bytes < 0 && flags == 0)) {
          open = false;  // the client hung up
          break;
        }
        if (got.envelope.bytes < 0) break;  // nothing more waiting
        absl::StatusOr<fdchannel::FromClient> message =
            fdchannel::DecodeFromClient(got.envelope, frame, payload);
        if (!message.ok()) {
          ADD_FAILURE() << message.status();
          continue;
        }
        if (const auto* call = std::get_if<fdchannel::Call>(&*message)) {
          calls.push_back(call->id);
        } else if (std::holds_alternative<fdchannel::Release>(*message)) {
          releases_.fetch_add(1);
        }
      }
      std::reverse(calls.begin(), calls.end());
      for (uint64_t id : calls) Answer(id);
    }
    socket_.reset();
  }

  uint64_t answered() const { return answered_.load(); }
  uint64_t releases() const { return releases_.load(); }

 private:
  void Answer(uint64_t id) {
    UniqueFd memory(::memfd_create(MemfdName(id).c_str(), MFD_CLOEXEC));
    ASSERT_TRUE(memory.valid()) << "memfd_create: errno " << errno;
    const fdchannel::FdGrant grant{.grant_id = id, .handle = id};
    EXPECT_TRUE(fdchannel::SentWhole(fdchannel::SendFrame(
        socket_.get(), fdchannel::Encode(grant), memory.get(), 0)));
    const fdchannel::Reply reply{id, absl::StatusCode::kOk, absl::StrCat(id)};
    EXPECT_TRUE(fdchannel::SentWhole(
        fdchannel::SendMessage(socket_.get(), fdchannel::Encode(reply),
                               reply.payload, -1, 0),
        reply.payload.size()));
    answered_.fetch_add(1);
  }

  UniqueFd socket_;
  std::atomic<uint64_t> answered_{0};
  std::atomic<uint64_t> releases_{0};
};

uint64_t CallOf(const fdchannel::Reply& reply) {
  uint64_t id = 0;
  return absl::SimpleAtoi(reply.payload, &id) ? id : 0;
}

TEST(ClientFdChannelConcurrencyTest,
     EveryReplyAndFdReachesItsCallOrTheOrphans) {
  FakeFdChannel daemon;
  const int baseline = testing::CountFds(::getpid());
  UniqueFd accepted;
  std::thread greeter([&] { accepted = daemon.Accept(/*default_lease=*/1); });
  absl::StatusOr<std::unique_ptr<FdChannel>> channel =
      FdChannel::Open(daemon.socket_path(), kDeadline);
  greeter.join();
  ASSERT_TRUE(channel.ok()) << channel.status();
  ASSERT_TRUE(accepted.valid());
  // Calls that gave up: their replies come here, under the channel's lock.
  std::atomic<uint64_t> orphans{0};
  (*channel)->SetOrphanHandler([&](const fdchannel::Reply& reply) {
    orphans.fetch_add(1);
    return CallOf(reply);  // the grant whose fd the channel closes
  });
  StandIn stand_in(std::move(accepted));
  std::thread daemon_thread([&] { stand_in.Run(); });

  const int calls = CallsPerThread();
  std::atomic<uint64_t> answered{0}, gave_up{0}, sent_one_way{0};
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        // Every eighth call gives up at once, unless its reply is there.
        const bool impatient = (i + t) % 8 == 7;
        fdchannel::Call call{.method = fdchannel::CallMethod::kAllocate,
                             .timeout_ms = 20000,
                             .payload = "allocate"};
        absl::StatusOr<fdchannel::Reply> reply = (*channel)->Call(
            std::move(call), impatient ? absl::Now() : absl::Now() + kDeadline);
        if (!reply.ok()) {
          EXPECT_TRUE(impatient && absl::IsDeadlineExceeded(reply.status()))
              << reply.status();
          gave_up.fetch_add(1);
          continue;
        }
        const uint64_t id = CallOf(*reply);
        absl::StatusOr<UniqueFd> fd =
            (*channel)->TakeFd(id, absl::Now() + kDeadline);
        ASSERT_TRUE(fd.ok()) << fd.status();
        EXPECT_EQ(FdTarget(fd->get()),
                  absl::StrCat("/memfd:", MemfdName(id), " (deleted)"));
        answered.fetch_add(1);
        if (i % 3 == 0 && (*channel)->Send(fdchannel::Release{id, 0})) {
          sent_one_way.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const uint64_t total = uint64_t{kThreads} * calls;
  EXPECT_EQ(answered.load() + gave_up.load(), total);

  // The replies of the calls that gave up reach the orphan handler when
  // somebody reads them: read what is waiting until they all have.
  const absl::Time deadline = absl::Now() + kDeadline;
  while ((stand_in.answered() < total || orphans.load() < gave_up.load()) &&
         absl::Now() < deadline) {
    (*channel)->ClosingText();
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(stand_in.answered(), total);
  EXPECT_EQ(orphans.load(), gave_up.load());
  // Every fd was claimed and closed by its caller, or closed for an orphan:
  // open are only the two ends of the channel.
  EXPECT_EQ(testing::CountFds(::getpid()), baseline + 2);

  channel->reset();  // hangs up: the stand-in returns
  daemon_thread.join();
  EXPECT_EQ(stand_in.releases(), sent_one_way.load());
  EXPECT_EQ(testing::CountFds(::getpid()), baseline);
}

}  // namespace
}  // namespace shmbroker::client
