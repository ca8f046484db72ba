// The fd channel (server/fd_channel.h) with every thread the daemon runs
// against it: its event loop (accepting, reading one-way Release frames,
// noticing hang-ups), the ConnectionCloser that ends closed connections,
// the lease sweeper expiring leases, and client threads that each play
// both a client process at the far end of its socket and the gRPC handler
// serving that client's Allocate calls, as BrokerService does (Find by
// token, ApplyPending, Registry::Allocate, SendFd or SendArenaFd). gRPC
// itself is not here, so all the threads are the daemon's own. In the
// suite it checks outcomes (every call answered as the contract says,
// nothing left held); under TSan (docs/testing.md, "ThreadSanitizer") the
// server's locking.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/unique_fd.h"
#include "core/registry.h"
#include "gtest/gtest.h"
#include "server/fd_channel.h"
#include "server/lease_sweeper.h"
#include "server/metrics.h"
#include "server/reclaim_latency.h"
#include "spdlog/spdlog.h"
#include "tests/common/raw_fd_channel.h"

namespace shmbroker {
namespace {

using testing::DialFdChannel;
using testing::RawFdChannel;

constexpr int kClients = 4;
// Connections per client thread; SHMBROKER_FD_CHANNEL_ROUNDS for more.
int Rounds() {
  const char* env = std::getenv("SHMBROKER_FD_CHANNEL_ROUNDS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 12;
}
constexpr int kBuffersPerRound = 24;  // half pooled, half dedicated

// How a round's connection ends.
enum class Ending {
  kHangUp,             // the socket closes with holds left
  kReleaseThenHangUp,  // every hold released one-way, then closed at once
  kRevoked,            // the default lease revoked: the daemon hangs up
  kShortLease,         // holds under a 100 ms lease the sweeper expires
};

// The daemon's pieces, and what the client threads call as BrokerService's
// handlers would.
class Daemon {
 public:
  Daemon() {
    // A line per connection closed and lease expired is the daemon's
    // business, not this test's: warnings and errors still show.
    spdlog::set_level(spdlog::level::warn);
    char dir_template[] = "/tmp/fd_channel_concurrency_XXXXXX";
    const char* dir = ::mkdtemp(dir_template);
    EXPECT_NE(dir, nullptr) << "mkdtemp: errno " << errno;
    dir_ = dir != nullptr ? dir : "/tmp";
    path_ = dir_ + "/s.fds";
    RegistryOptions options;
    options.leases.min_ttl = absl::Milliseconds(100);
    options.leases.reclaim_batch = 4;  // drains in steps, between calls
    metrics_ = *Metrics::Create(MetricsOptions{});
    registry_ =
        std::make_unique<Registry>(options, RealClock(), metrics_.get());
    EXPECT_TRUE(registry_->EnablePooling(PooledAllocatorOptions{}).ok());
    listener_ = Listen(path_);
    channel_ = std::make_unique<FdChannel>(
        registry_.get(), listener_.get(), metrics_.get(), &latencies_,
        /*keepalive_per_second=*/1000, /*frames_per_second=*/100000);
    EXPECT_TRUE(channel_->Start().ok());
    sweeper_ = std::make_unique<LeaseSweeper>(registry_.get(), channel_.get(),
                                              metrics_.get(), &latencies_,
                                              /*batch=*/2);
    sweeper_->Start();
  }
  ~Daemon() {
    sweeper_->Stop();
    channel_->Stop();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  const std::string& path() const { return path_; }
  Registry& registry() { return *registry_; }

  // An Allocate for the connection with `token`, under `lease` (0: its
  // default), with the one-way frames it sent before applied first (rule
  // 2); the fd goes out before the reply would. Returns the handle and
  // whether a frame with an fd was sent for it.
  absl::StatusOr<std::pair<Handle, bool>> Allocate(const std::string& token,
                                                   uint64_t frames_sent,
                                                   bool pooled, LeaseId lease) {
    std::shared_ptr<ClientConnection> c = channel_->Find(token);
    if (c == nullptr) return absl::UnauthenticatedError("unknown token");
    if (absl::Status s = channel_->ApplyPending(*c, frames_sent); !s.ok()) {
      return s;
    }
    AllocateSpec spec;
    spec.size = pooled ? 256 : 8192;
    spec.kind = pooled ? BufferKind::kPooled : BufferKind::kDedicated;
    spec.lease = lease;
    absl::StatusOr<Grant> grant = registry_->Allocate(c->id, spec);
    if (!grant.ok()) return grant.status();
    const BufferInfo& info = grant->buffer;
    absl::StatusOr<uint64_t> sent =
        pooled ? channel_->SendArenaFd(*c, info.handle, {info.arena_id, true},
                                       grant->fd_to_send())
               : channel_->SendFd(*c, info.handle, grant->fd_to_send());
    if (!sent.ok()) {
      registry_->Release(c->id, BufferRef::ByHandle(info.handle), grant->lease)
          .IgnoreError();
      return sent.status();
    }
    return std::make_pair(info.handle, *sent != 0);
  }

  // RevokeLease as BrokerService does it: a default lease's connection is
  // closed in the Registry, and the transport hangs up.
  absl::Status Revoke(const Identity& caller, LeaseId lease) {
    absl::StatusOr<CloseResult> result = registry_->RevokeLease(caller, lease);
    if (!result.ok()) return result.status();
    for (ConnectionId id : result->connections_closed) {
      channel_->Hangup(id, "its default lease was revoked");
    }
    return absl::OkStatus();
  }

 private:
  static UniqueFd Listen(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    EXPECT_EQ(
        ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd.get(), 64), 0);
    return fd;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Registry> registry_;
  ReclaimLatencies latencies_;
  UniqueFd listener_;
  std::unique_ptr<FdChannel> channel_;
  std::unique_ptr<LeaseSweeper> sweeper_;
};

// A client's end of one connection.
struct Connection {
  UniqueFd socket;
  fdchannel::Hello hello;
  uint64_t frames_sent = 0;
};

absl::StatusOr<Connection> Connect(const std::string& path) {
  // A daemon that never answers fails the test instead of hanging it (the
  // 10 s receive timeout stays on the socket).
  absl::StatusOr<RawFdChannel> raw = DialFdChannel(path);
  if (!raw.ok()) return raw.status();
  const auto* hello = std::get_if<fdchannel::Hello>(&raw->first);
  if (hello == nullptr) {
    return absl::InternalError("the first frame is not a Hello");
  }
  return Connection{.socket = std::move(raw->socket), .hello = *hello};
}

// Reads the next frame: an FdGrant for `handle`, with its fd.
bool ReceivedGrantFor(Connection& c, Handle handle) {
  fdchannel::Frame frame;
  fdchannel::Received got = fdchannel::RecvFrame(c.socket.get(), &frame, 0);
  absl::StatusOr<fdchannel::FromDaemon> m =
      fdchannel::DecodeFromDaemon(got.envelope, frame);
  return m.ok() && std::holds_alternative<fdchannel::FdGrant>(*m) &&
         std::get<fdchannel::FdGrant>(*m).handle == handle && got.fd.valid();
}

// Reads until the daemon hangs up: an ErrorText, then the end.
bool HungUpOn(Connection& c) {
  for (;;) {
    fdchannel::Frame frame;
    fdchannel::Received got = fdchannel::RecvFrame(c.socket.get(), &frame, 0);
    if (got.envelope.bytes == 0) return true;
    if (got.envelope.bytes < 0) return false;
  }
}

// One client thread's rounds; each failed expectation is reported and
// counted.
void RunClient(Daemon& daemon, int client, std::atomic<int>* failures) {
  auto fail = [&](const std::string& what) {
    ADD_FAILURE() << "client " << client << ": " << what;
    failures->fetch_add(1);
  };
  const int rounds = Rounds();
  for (int round = 0; round < rounds; ++round) {
    const Ending ending = static_cast<Ending>((client + round) % 4);
    absl::StatusOr<Connection> c = Connect(daemon.path());
    if (!c.ok()) {
      fail(c.status().ToString());
      return;
    }
    const std::string token = fdchannel::TokenToHex(c->hello.token);
    LeaseId lease = 0;
    if (ending == Ending::kShortLease) {
      absl::StatusOr<LeaseInfo> granted = daemon.registry().GrantLease(
          c->hello.connection_id, absl::Milliseconds(100), false);
      if (!granted.ok()) {
        fail(granted.status().ToString());
        continue;
      }
      lease = granted->id;
    }
    std::vector<Handle> held;
    for (int i = 0; i < kBuffersPerRound; ++i) {
      absl::StatusOr<std::pair<Handle, bool>> a =
          daemon.Allocate(token, c->frames_sent, i % 2 == 0, lease);
      if (!a.ok()) {
        // Only a short lease may run out under the allocations (on a slow
        // machine): NOT_FOUND, "lease N expired".
        if (ending != Ending::kShortLease ||
            a.status().code() != absl::StatusCode::kNotFound) {
          fail(a.status().ToString());
        }
        break;
      }
      if (a->second && !ReceivedGrantFor(*c, a->first)) {
        fail(absl::StrCat("no fd for buffer ", a->first));
      }
      held.push_back(a->first);
      // Every third one back at once, one-way: applied before the next
      // call, or by the event loop if it reads first.
      if (i % 3 == 0) {
        fdchannel::SendFrame(c->socket.get(),
                             fdchannel::Encode(fdchannel::Release{a->first}),
                             -1, 0);
        ++c->frames_sent;
        held.pop_back();
      }
    }
    const Identity me{.pid = ::getpid(), .uid = ::getuid(), .gid = ::getgid()};
    switch (ending) {
      case Ending::kHangUp:
        break;  // closing the socket below ends the rest
      case Ending::kShortLease: {
        // The sweeper expires it and drops its holds in steps, while the
        // other clients call: wait for that state (with a deadline).
        const absl::Time deadline = absl::Now() + absl::Seconds(10);
        while (daemon.registry().LeaseTimeToLive(me, 0, lease).ok() &&
               absl::Now() < deadline) {
          absl::SleepFor(absl::Milliseconds(2));
        }
        if (daemon.registry().LeaseTimeToLive(me, 0, lease).ok()) {
          fail(absl::StrCat("lease ", lease, " never expired"));
        }
        break;
      }
      case Ending::kReleaseThenHangUp:
        for (Handle h : held) {
          fdchannel::SendFrame(c->socket.get(),
                               fdchannel::Encode(fdchannel::Release{h}), -1, 0);
        }
        break;
      case Ending::kRevoked: {
        if (absl::Status s = daemon.Revoke(me, c->hello.default_lease);
            !s.ok()) {
          fail(s.ToString());
        } else if (!HungUpOn(*c)) {
          fail("not hung up on after its default lease was revoked");
        }
        break;
      }
    }
  }
}

TEST(FdChannelConcurrencyTest, EveryThreadOfTheDaemonAtOnceLeavesNothing) {
  Daemon daemon;
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  // A scrape's view of the state, as often as it can, meanwhile.
  std::thread observer([&] {
    while (!done.load()) {
      daemon.registry().Stats();
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(RunClient, std::ref(daemon), i, &failures);
  }
  for (std::thread& t : clients) t.join();
  done.store(true);
  observer.join();
  EXPECT_EQ(failures.load(), 0);

  // Every connection closed or hung up on: the closer and the sweeper
  // take everything back. A wait for that state, not for a time.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  RegistryStats stats = daemon.registry().Stats();
  while ((stats.buffers > 0 || stats.holds > 0 || stats.clients > 0 ||
          stats.leases > 0) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    stats = daemon.registry().Stats();
  }
  EXPECT_EQ(stats.buffers, 0u);
  EXPECT_EQ(stats.holds, 0u);
  EXPECT_EQ(stats.clients, 0u);
  EXPECT_EQ(stats.leases, 0u);
  EXPECT_EQ(stats.allocated_bytes, 0u);
}

}  // namespace
}  // namespace shmbroker
