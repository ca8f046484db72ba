// Surviving a daemon restart (issue 14), the client library's half: a client
// holding buffers of every kind keeps them across a SIGKILL and a SIGTERM
// restart of the daemon on the same socket and state directory, and a
// client whose daemon never comes back hears of it within its lease's TTL.
//
// The RestartTest cases need the daemon's half (--state_dir, the books, the
// Present frame and Resume); the NeverComesBack cases need only the client.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

uint8_t PatternByte(uint64_t seed, size_t i) {
  return static_cast<uint8_t>((seed * 131 + i * 7 + 1) & 0xff);
}

void Fill(client::Buffer& b, uint64_t seed) {
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = PatternByte(seed, i);
}

// Empty when every byte is the pattern's; else where it differs.
std::string Mismatch(const uint8_t* data, size_t size, uint64_t seed) {
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != PatternByte(seed, i)) {
      return absl::StrCat("byte ", i, " is ", data[i], ", not ",
                          PatternByte(seed, i));
    }
  }
  return "";
}

// What a client heard from its library: resumes and lost leases.
struct Heard {
  absl::Mutex mu;
  std::vector<client::ResumeReport> resumes ABSL_GUARDED_BY(mu);
  std::vector<std::pair<uint64_t, absl::Status>> lost ABSL_GUARDED_BY(mu);

  client::ClientOptions Options(const std::string& socket) {
    client::ClientOptions options;
    options.socket_path = socket;
    options.on_resumed = [this](const client::ResumeReport& report) {
      absl::MutexLock lock(&mu);
      resumes.push_back(report);
    };
    options.on_lease_lost = [this](uint64_t id, const absl::Status& why) {
      absl::MutexLock lock(&mu);
      lost.emplace_back(id, why);
    };
    return options;
  }
  ::testing::AssertionResult AwaitResumes(size_t n) {
    return WaitFor(absl::StrCat(n, " resumes"), [&](std::string* seen) {
      absl::MutexLock lock(&mu);
      *seen = absl::StrCat(resumes.size(), " resumes, ", lost.size(),
                           " leases lost");
      return resumes.size() >= n;
    });
  }
  ::testing::AssertionResult AwaitLoss(uint64_t lease) {
    return WaitFor(absl::StrCat("lease ", lease, " reported lost"),
                   [&](std::string* seen) {
                     absl::MutexLock lock(&mu);
                     *seen = absl::StrCat(lost.size(), " leases lost");
                     for (const auto& [id, why] : lost) {
                       if (id == lease) return true;
                     }
                     return false;
                   });
  }
};

// A daemon on a directory of the test's, so that it can be restarted on the
// same socket and state directory.
class RestartFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shmbroker-restart-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::chmod(dir_.c_str(), 0711);
    daemon_ = std::make_unique<TestDaemon>(Flags(), dir_);
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
  }
  void TearDown() override {
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  virtual std::vector<std::string> Flags() const {
    return {"--state_dir=" + dir_ + "/state", "--restart_grace=60s"};
  }
  // Stops the daemon with `signal` (SIGKILL or SIGTERM) and starts a new one
  // on the same socket and state directory.
  void Restart(int signal) {
    if (signal == SIGKILL) {
      daemon_->Kill();
    } else {
      Finished f = daemon_->Stop(SIGTERM);
      EXPECT_TRUE(ExitedCleanly(f));
    }
    daemon_.reset();
    daemon_ = std::make_unique<TestDaemon>(Flags(), dir_);
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
  }

  std::string dir_;
  std::unique_ptr<TestDaemon> daemon_;
};

class RestartTest : public RestartFixture,
                    public ::testing::WithParamInterface<int> {};

TEST_P(RestartTest, AClientKeepsItsBuffersAndLeasesAcrossARestart) {
  Heard heard;
  auto client = client::Client::Connect(heard.Options(daemon_->socket()));
  ASSERT_TRUE(client.ok()) << client.status();
  client::Client& c = **client;
  const uint64_t default_lease = c.default_lease();
  auto lease = c.GrantLease(absl::Seconds(10));
  ASSERT_TRUE(lease.ok()) << lease.status();

  client::AllocateOptions dedicated{.size = 1 << 20, .name = "dedicated"};
  dedicated.kind = client::Kind::kDedicated;
  client::AllocateOptions pooled{.size = 4096, .name = "pooled"};
  pooled.kind = client::Kind::kPooled;
  client::AllocateOptions posix{.size = 64 << 10, .name = "posix"};
  posix.backing = client::Backing::kPosix;
  client::AllocateOptions leased{.size = 8192, .name = "leased"};
  leased.lease_id = lease->id;
  std::vector<client::Buffer> buffers;
  std::vector<uint64_t> handles;
  for (const auto& options : {dedicated, pooled, posix, leased}) {
    auto b = c.Allocate(options);
    ASSERT_TRUE(b.ok()) << options.name << ": " << b.status();
    Fill(*b, b->handle());
    handles.push_back(b->handle());
    buffers.push_back(std::move(*b));
  }
  ASSERT_EQ(buffers[1].kind(), client::Kind::kPooled);

  Restart(GetParam());
  ASSERT_TRUE(heard.AwaitResumes(1));
  {
    absl::MutexLock lock(&heard.mu);
    const client::ResumeReport& report = heard.resumes[0];
    EXPECT_THAT(report.leases_adopted,
                UnorderedElementsAreArray({default_lease, lease->id}));
    EXPECT_THAT(report.leases_lost, IsEmpty());
    EXPECT_THAT(report.buffers_adopted, UnorderedElementsAreArray(handles));
    EXPECT_THAT(report.buffers_refused, IsEmpty());
    EXPECT_THAT(heard.lost, IsEmpty());
    EXPECT_LE(report.went_away, report.resumed);
  }

  // The pages never left; the daemon's books are back.
  for (const client::Buffer& b : buffers) {
    EXPECT_EQ(Mismatch(b.data(), b.size(), b.handle()), "") << b.info().name;
    EXPECT_TRUE(b.lease_status().ok()) << b.lease_status();
  }
  EXPECT_TRUE(WaitForStatus(c, "the buffers and holds re-adopted",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 4 && s.holds == 4;
                            }));
  // Another process attaches the very memory the client presented.
  auto other = daemon_->Connect();
  ASSERT_TRUE(other.ok()) << other.status();
  for (size_t i : {0u, 2u}) {
    auto attached = (*other)->Attach(buffers[i].info().name);
    ASSERT_TRUE(attached.ok()) << attached.status();
    EXPECT_EQ(Mismatch(attached->data(), attached->size(), handles[i]), "");
  }
  other->reset();

  // The client works as before: renewing, releasing, allocating.
  auto ttl = c.LeaseTimeToLive(lease->id);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(ttl->holds, 1u);
  EXPECT_TRUE(buffers[1].Release().ok());
  EXPECT_TRUE(buffers[0].Release().ok());
  auto fresh = c.Allocate({.size = 4096, .name = "fresh"});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(WaitForStatus(c, "two released and one new",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 3 && s.holds == 3;
                            }));
  buffers.clear();
  fresh->Release().IgnoreError();
  EXPECT_TRUE(WaitForStatus(c, "everything released",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 0 && s.holds == 0;
                            }));
  absl::MutexLock lock(&heard.mu);
  EXPECT_THAT(heard.lost, IsEmpty());
}

TEST_P(RestartTest, TheCliKeepsHoldingAcrossARestart) {
  Subprocess holder(
      daemon_->CliArgs({"alloc", "1MiB", "--name=held", "--hold=120s"}));
  ASSERT_TRUE(holder.WaitForOutput("held", absl::Seconds(10)));
  Restart(GetParam());
  auto c = daemon_->Connect();
  ASSERT_TRUE(c.ok()) << c.status();
  // Status counts a restored buffer at once; the holder has resumed when
  // its lease is a connection's again (Resume ran) holding one live buffer.
  EXPECT_TRUE(WaitFor("the holder resumed", [&](std::string* seen) {
    absl::StatusOr<std::vector<client::LeaseInfo>> leases = (*c)->ListLeases();
    absl::StatusOr<client::BufferInfo> held = (*c)->Describe("held");
    *seen = held.ok() ? "buffer live" : std::string(held.status().message());
    if (!leases.ok() || !held.ok()) return false;
    for (const client::LeaseInfo& lease : *leases) {
      if (lease.holds == 1 && lease.connected &&
          lease.owner_pid != ::getpid()) {
        return true;
      }
    }
    return false;
  }));
  holder.Signal(SIGTERM);  // it releases on the way out
  Finished f = holder.Wait(absl::Seconds(20));
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_TRUE(WaitForStatus(
      **c, "the held buffer released",
      [](const client::DaemonStatus& s) { return s.buffers == 0; }));
}

INSTANTIATE_TEST_SUITE_P(Signals, RestartTest,
                         ::testing::Values(SIGKILL, SIGTERM),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == SIGKILL ? "Sigkill" : "Sigterm";
                         });

// Needs nothing of the daemon's half: the daemon is never restarted.
class NeverComesBackTest : public RestartFixture {
 protected:
  std::vector<std::string> Flags() const override { return {}; }
};

TEST_F(NeverComesBackTest, AClientLearnsWithinItsLeaseTtlThatTheDaemonWent) {
  Heard heard;
  auto client = client::Client::Connect(heard.Options(daemon_->socket()));
  ASSERT_TRUE(client.ok()) << client.status();
  auto lease = (*client)->GrantLease(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto buffer = (*client)->Allocate({.size = 4096, .lease_id = lease->id});
  ASSERT_TRUE(buffer.ok()) << buffer.status();

  daemon_->Kill();
  ASSERT_TRUE(heard.AwaitLoss(lease->id));
  const absl::Status why = buffer->lease_status();
  EXPECT_EQ(why.code(), absl::StatusCode::kUnavailable) << why;
  EXPECT_THAT(why.message(),
              AllOf(HasSubstr(absl::StrCat("the daemon at ", daemon_->socket(),
                                           " went away")),
                    HasSubstr(absl::StrCat("did not come back within lease ",
                                           lease->id, "'s TTL of 2s"))));
  EXPECT_EQ(buffer->Release().code(), absl::StatusCode::kUnavailable);
  absl::MutexLock lock(&heard.mu);
  EXPECT_THAT(heard.resumes, IsEmpty());
}

TEST_F(NeverComesBackTest, AHoldingCliSaysWhyItStopped) {
  Subprocess holder(daemon_->CliArgs(
      {"alloc", "4KiB", "--name=orphan", "--ttl=2s", "--hold=120s"}));
  ASSERT_TRUE(holder.WaitForOutput("orphan", absl::Seconds(10)));
  daemon_->Kill();
  Finished f = holder.Wait(absl::Seconds(30));
  EXPECT_EQ(f.exit_code, 1) << f.err;
  EXPECT_THAT(f.err, AllOf(HasSubstr("lease was lost"), HasSubstr("went away"),
                           HasSubstr("TTL of 2s")));
}

}  // namespace
}  // namespace shmbroker::testing
