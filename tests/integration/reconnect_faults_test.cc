// The fault matrix's restart points: clients SIGKILLed mid-reconnect.
// fault_worker processes hold buffers of every kind; the daemon is
// SIGKILLed (every third round: stopped with SIGTERM, the upgrade path) and
// started again on the same socket and state directory; each worker's
// library reconnects, and a pause point (client/src/test_hooks.h) stops it
//   resume_presented  with its fds presented on the new fd channel, Resume
//                     not yet called, or
//   resume_reply      once the new daemon answered Resume and so took its
//                     leases and buffers back,
// where the test SIGKILLs it. After every round the new daemon must hold
// nothing: no buffer, byte, hold, lease (detached or not), client, waiter
// or watcher, its fd count what the first daemon had with nobody
// connected but the observer, and no name of its prefix in /dev/shm.
// Every (point, kind) pair comes up in every round; how many buffers each
// worker holds (1-3) comes from the seed.
//
//   SHMBROKER_RECONNECT_SEED=N     the seed (printed; random when unset)
//   SHMBROKER_RECONNECT_ROUNDS=N   restarts (5), e.g. 100
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/restart_support.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

constexpr const char* kPoints[] = {"resume_presented", "resume_reply"};
constexpr const char* kKinds[] = {"pooled", "dedicated", "posix", "shared",
                                  "detached"};
// A lease nobody resumed (its worker was killed before its Resume) is owned
// by no connection: it ends when its TTL, moved later by the grace, runs
// out. Both short, so that a round ends soon after; longer than a restart
// and reconnect take here (about 0.1 s), so that no worker gives up a
// lease while the daemon is away.
#if defined(__SANITIZE_ADDRESS__)
constexpr char kGrace[] = "3s";
constexpr char kLeaseTtl[] = "4s";
#else
constexpr char kGrace[] = "1s";
constexpr char kLeaseTtl[] = "2s";
#endif

class ReconnectFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RunningAsRoot());  // the shared kind runs as uid 65534
    char tmpl[] = "/tmp/shmbroker-reconnect-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0711);
    ASSERT_TRUE(StartDaemon());
    ShareCliWithOtherUids(*daemon_);
    worker_copy_ = dir_ + "/fault_worker";
    std::filesystem::copy_file(FAULT_WORKER_PATH, worker_copy_);
    ::chmod(worker_copy_.c_str(), 0755);
    baseline_fds_ = CountFds(daemon_->pid());
  }

  void TearDown() override {
    observer_.reset();
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A daemon on dir_ (the same socket and books every time), and an
  // observer that only calls Status: no fd channel, so it holds no lease,
  // and no resume, so a new one is made for each daemon.
  ::testing::AssertionResult StartDaemon() {
    daemon_ = std::make_unique<TestDaemon>(
        std::vector<std::string>{
            "--state_dir=" + dir_ + "/state",
            absl::StrCat("--restart_grace=", kGrace),
            absl::StrCat("--lease_default_ttl=", kLeaseTtl),
            "--lease_min_ttl=100ms", "--scavenge_delay=200ms",
            "--socket_group=" + std::to_string(kNobody),
            "--shm_prefix=" + shm_prefix_},
        dir_);
    if (!daemon_->started()) {
      return ::testing::AssertionFailure() << daemon_->startup_output();
    }
    client::ClientOptions options;
    options.socket_path = daemon_->socket();
    options.open_client_connection = false;
    options.resume_after_restart = false;
    absl::StatusOr<std::unique_ptr<client::Client>> c =
        client::Client::Connect(options);
    if (!c.ok()) return ::testing::AssertionFailure() << c.status();
    observer_ = std::move(*c);
    // Its gRPC connection opens at the first call: before the baseline.
    if (absl::StatusOr<client::DaemonStatus> s = observer_->Status(); !s.ok()) {
      return ::testing::AssertionFailure() << s.status();
    }
    return ::testing::AssertionSuccess();
  }

  // A worker holding `buffers` buffers of `kind`, to be stopped at `point`
  // of its first resume.
  std::unique_ptr<Subprocess> StartWorker(const std::string& point,
                                          const std::string& kind, int buffers,
                                          const std::string& tag) {
    std::vector<std::string> argv;
    std::vector<std::string> env;
    if (kind == "shared") {
      argv = AsUid(kNobody, {worker_copy_});
      env = CliEnvAs(*daemon_);
    } else {
      argv = {FAULT_WORKER_PATH};
    }
    for (std::string arg : {daemon_->socket(), std::string("hold"), kind,
                            std::to_string(buffers), tag}) {
      argv.push_back(arg);
    }
    env.push_back(absl::StrCat("SHMBROKER_TEST_PAUSE_AT=", point, ":1"));
    return std::make_unique<Subprocess>(argv, "", env);
  }

  // The daemon holds nothing, and has the fds and /dev/shm names it had
  // before any worker came.
  ::testing::AssertionResult HoldsNothing(const std::string& what) {
    return WaitFor(what, [&](std::string* seen) {
      absl::StatusOr<client::DaemonStatus> s = observer_->Status();
      if (!s.ok()) {
        *seen = s.status().ToString();
        return false;
      }
      const int fds = CountFds(daemon_->pid());
      const std::vector<std::string> shm = ShmNames(shm_prefix_ + ".");
      *seen = absl::StrCat(StatusText(*s), " committed=", s->committed_bytes,
                           " detached=", s->detached_leases,
                           " waiters=", s->waiters, " watchers=", s->watchers,
                           " fds=", fds, " (baseline ", baseline_fds_,
                           ") /dev/shm: ", absl::StrJoin(shm, ","));
      if (fds != baseline_fds_) {
        absl::StrAppend(seen, "; its fds: ", DescribeFds(daemon_->pid()));
      }
      return s->buffers == 0 && s->allocated_bytes == 0 &&
             s->committed_bytes == 0 && s->holds == 0 && s->leases == 0 &&
             s->detached_leases == 0 && s->clients == 0 && s->waiters == 0 &&
             s->watchers == 0 && fds == baseline_fds_ && shm.empty();
    });
  }

  std::string dir_;
  std::string worker_copy_;
  const std::string shm_prefix_ = absl::StrCat("reconnect-", ::getpid());
  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<client::Client> observer_;
  int baseline_fds_ = 0;
};

TEST_F(ReconnectFaultsTest, ClientsKilledMidReconnectLeaveNothingBehind) {
  const uint64_t seed =
      EnvOr("SHMBROKER_RECONNECT_SEED", std::random_device{}());
  const uint64_t rounds = EnvOr("SHMBROKER_RECONNECT_ROUNDS", 5);
  std::printf(
      "reconnect faults: SHMBROKER_RECONNECT_SEED=%lu "
      "SHMBROKER_RECONNECT_ROUNDS=%lu\n",
      seed, rounds);
  std::fflush(stdout);
  std::mt19937_64 random(seed);
  std::map<std::string, int> killed_at;
  const absl::Time start = absl::Now();
  for (uint64_t round = 0; round < rounds; ++round) {
    const int signal = round % 3 == 1 ? SIGTERM : SIGKILL;
    const std::string where = absl::StrCat(
        "round ", round, " (seed ", seed, ", the daemon ",
        signal == SIGKILL ? "SIGKILLed" : "stopped by SIGTERM", ")");
    struct Victim {
      std::string pair;
      std::unique_ptr<Subprocess> process;
    };
    std::vector<Victim> victims;
    for (const char* point : kPoints) {
      for (const char* kind : kKinds) {
        const int buffers = 1 + static_cast<int>(random() % 3);
        const std::string tag = absl::StrCat("r", round, "-", victims.size());
        victims.push_back({absl::StrCat(kind, " at ", point),
                           StartWorker(point, kind, buffers, tag)});
      }
    }
    for (Victim& v : victims) {
      if (!v.process->WaitForOutput("holding", kStateDeadline)) {
        v.process->Signal(SIGKILL);
        FAIL() << where << ", " << v.pair << ": " << v.process->Wait().out;
      }
    }

    observer_.reset();
    if (signal == SIGKILL) {
      daemon_->Kill();
    } else {
      EXPECT_TRUE(ExitedCleanly(daemon_->Stop(SIGTERM))) << where;
    }
    daemon_.reset();
    ASSERT_TRUE(StartDaemon()) << where;

    for (Victim& v : victims) {
      const std::string line =
          "shmbroker: paused at " + v.pair.substr(v.pair.find(" at ") + 4);
      if (!v.process->WaitForOutput(line, kStateDeadline)) {
        v.process->Signal(SIGKILL);
        ADD_FAILURE() << where << ", " << v.pair << ": no \"" << line
                      << "\": " << v.process->Wait().out;
        continue;
      }
      v.process->Signal(SIGKILL);
      const Finished f = v.process->Wait();
      EXPECT_EQ(f.signal, SIGKILL) << where << ", " << v.pair << ": " << f.out;
      ++killed_at[v.pair];
    }
    ASSERT_TRUE(HoldsNothing(
        absl::StrCat("after ", where,
                     ": no buffer, byte, hold, lease or client, fds at "
                     "baseline, nothing in /dev/shm")));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("reconnect faults: %lu restarts, %zu kills in %.1f s, seed %lu\n",
              rounds, rounds * std::size(kPoints) * std::size(kKinds), seconds,
              seed);
  for (const auto& [pair, n] : killed_at) {
    std::printf("  %-32s %d\n", pair.c_str(), n);
  }
  EXPECT_EQ(killed_at.size(), std::size(kPoints) * std::size(kKinds));
}

}  // namespace
}  // namespace shmbroker::testing
