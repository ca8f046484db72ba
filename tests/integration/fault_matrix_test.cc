// The seeded fault matrix: client processes (fault_worker) SIGKILLed at
// every point that matters, across the kinds of buffer, many at once, on
// one daemon per batch; after every batch the daemon must be back where it
// was: the test's own buffer, hold, lease and connection only, no waiter or
// watcher, its fd count at baseline, and no POSIX object of its prefix in
// /dev/shm.
//
// Points (client/src/test_hooks.h): allocate_reply, attach_reply (also
// after a wait ended), release_sent, keepalive_sent, seal_reply,
// watch_event (mid-Watch, with its buffers held); and, with
// no pause point, "holding" (killed while holding what it got) and
// "blocked" (killed while its Attach waits, once the daemon counts the
// waiter). Kinds: pooled, dedicated, posix, shared (the worker runs as
// uid 65534 and attaches the test's buffer shared with it, or allocates
// buffers shared with uid 0), detached (held under a detached lease).
// Every (operation, kind) pair comes up in every run of at least 45 trials;
// the order, and the round (1-3) whose hit is the one killed, come from the
// seed.
//
//   SHMBROKER_FAULT_SEED=N     the seed (printed; random when unset)
//   SHMBROKER_FAULT_TRIALS=N   trials (300; 120 under ASan), e.g. 5000
//   SHMBROKER_FAULT_LANES=N    workers at once (3; 2 under ASan)
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
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

constexpr int kTrialsPerBatch = 50;
constexpr char kSharedName[] = "faults-shared";

#if defined(__SANITIZE_ADDRESS__)
constexpr uint64_t kDefaultTrials = 120;
constexpr uint64_t kDefaultLanes = 2;
#else
constexpr uint64_t kDefaultTrials = 300;
constexpr uint64_t kDefaultLanes = 3;
#endif

constexpr const char* kOps[] = {"allocate", "attach",    "release",
                                "hold",     "keepalive", "seal",
                                "wait",     "blocked",   "watch"};
constexpr const char* kKinds[] = {"pooled", "dedicated", "posix", "shared",
                                  "detached"};

// Where an operation's worker is killed: a pause point, or a line it prints.
std::string PointOf(const std::string& op) {
  if (op == "allocate") return "allocate_reply";
  if (op == "attach" || op == "wait") return "attach_reply";
  if (op == "release") return "release_sent";
  if (op == "keepalive") return "keepalive_sent";
  if (op == "seal") return "seal_reply";
  if (op == "watch") return "watch_event";
  return op == "hold" ? "holding" : "blocked";
}

struct Trial {
  int index = 0;
  std::string op;
  std::string kind;
  int rounds = 1;  // the hit of the point that is killed

  std::string ToString() const {
    return absl::StrCat("trial ", index, " (", op, " ", kind, ", killed at ",
                        PointOf(op), " of round ", rounds, ")");
  }
};

// Every (op, kind) pair once per 45 trials, in an order from the seed.
std::vector<Trial> MakeTrials(uint64_t seed, uint64_t count) {
  std::mt19937_64 random(seed);
  std::vector<Trial> pairs;
  for (const char* op : kOps) {
    for (const char* kind : kKinds) pairs.push_back({0, op, kind, 1});
  }
  std::vector<Trial> trials;
  for (uint64_t i = 0; i < count; ++i) {
    if (i % pairs.size() == 0) std::shuffle(pairs.begin(), pairs.end(), random);
    Trial t = pairs[i % pairs.size()];
    t.index = static_cast<int>(i);
    t.rounds = 1 + static_cast<int>(random() % 3);
    trials.push_back(t);
  }
  return trials;
}

class FaultMatrixTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    // Short lease bounds so that detached leases end within a batch; idle
    // arenas closed quickly so that the fd count comes back.
    return {"--socket_group=" + std::to_string(kNobody),
            "--lease_min_ttl=100ms", "--scavenge_delay=200ms",
            "--shm_prefix=" + shm_prefix_};
  }

  void SetUp() override {
    DaemonTest::SetUp();
    if (HasFatalFailure()) return;
    ShareCliWithOtherUids(*daemon_);
    const std::filesystem::path worker =
        std::filesystem::path(daemon_->dir()) / "fault_worker";
    std::filesystem::copy_file(FAULT_WORKER_PATH, worker);
    ::chmod(worker.c_str(), 0755);
    // The test's own state: a buffer shared with the other uid's workers.
    client::AllocateOptions options;
    options.size = 64 << 10;
    options.name = kSharedName;
    options.kind = client::Kind::kDedicated;
    options.share.push_back({client::ShareRule::Scope::kUid, kNobody, true});
    absl::StatusOr<client::Buffer> shared = client_->Allocate(options);
    ASSERT_TRUE(shared.ok()) << shared.status();
    shared_ = std::move(*shared);
    absl::StatusOr<client::DaemonStatus> own = client_->Status();
    ASSERT_TRUE(own.ok()) << own.status();
    own_ = *own;
    baseline_fds_ = CountFds(daemon_->pid());
  }

  // Runs one trial to its kill; "" or what went wrong.
  std::string Run(const Trial& t) {
    std::vector<std::string> argv, env;
    if (t.kind == "shared") {
      argv = AsUid(kNobody, {daemon_->dir() + "/fault_worker"});
      env = CliEnvAs(*daemon_);
    } else {
      argv = {FAULT_WORKER_PATH};
    }
    for (std::string arg :
         {daemon_->socket(), t.op, t.kind, std::to_string(t.rounds),
          absl::StrCat("t", t.index), std::string(kSharedName)}) {
      argv.push_back(arg);
    }
    const std::string point = PointOf(t.op);
    std::string line = point;
    if (point != "holding" && point != "blocked") {
      const int hit = t.op == "wait" ? 1 : t.rounds;
      env.push_back(absl::StrCat("SHMBROKER_TEST_PAUSE_AT=", point, ":", hit));
      line = "shmbroker: paused at " + point;
    } else if (point == "blocked") {
      line = "waiting";
    }
    // Waits are counted daemon-wide: one trial that waits at a time.
    std::unique_lock<std::mutex> waiting(waiters_mu_, std::defer_lock);
    if (t.op == "wait" || t.op == "blocked") waiting.lock();
    Subprocess worker(argv, "", env);
    if (!worker.WaitForOutput(line, kStateDeadline)) {
      worker.Signal(SIGKILL);
      return absl::StrCat("no \"", line, "\": ", worker.Wait().out);
    }
    if (t.op == "blocked" && !WaitersAre(1)) return "the waiter not counted";
    worker.Signal(SIGKILL);
    const Finished f = worker.Wait();
    if (f.signal != SIGKILL) {
      return absl::StrCat("exit ", f.exit_code, " signal ", f.signal, ": ",
                          f.out);
    }
    if (waiting.owns_lock() && !WaitersAre(0)) return "the waiter stayed";
    return "";
  }

  bool WaitersAre(uint64_t n) {
    return WaitFor(absl::StrCat(n, " waiters"), [&](std::string* seen) {
      absl::StatusOr<client::DaemonStatus> s = client_->Status();
      *seen = s.ok() ? StatusText(*s) : s.status().ToString();
      return s.ok() && s->waiters == n;
    });
  }

  // The daemon holds only the test's own state again.
  ::testing::AssertionResult BackToBaseline(const std::string& what) {
    const std::string prefix = shm_prefix_ + ".";
    return WaitFor(what, [&](std::string* seen) {
      absl::StatusOr<client::DaemonStatus> s = client_->Status();
      if (!s.ok()) {
        *seen = s.status().ToString();
        return false;
      }
      const int fds = CountFds(daemon_->pid());
      const std::vector<std::string> shm = ShmNames(prefix);
      *seen = absl::StrCat(
          StatusText(*s), " committed=", s->committed_bytes,
          " watchers=", s->watchers, " detached=", s->detached_leases,
          " fds=", fds, " (baseline ", baseline_fds_,
          ") /dev/shm: ", absl::StrJoin(shm, ","), "; own: ", StatusText(own_),
          " committed=", own_.committed_bytes);
      return s->buffers == own_.buffers &&
             s->allocated_bytes == own_.allocated_bytes &&
             s->committed_bytes == own_.committed_bytes &&
             s->holds == own_.holds && s->leases == own_.leases &&
             s->detached_leases == 0 && s->clients == own_.clients &&
             s->waiters == 0 && s->watchers == 0 && fds == baseline_fds_ &&
             shm.empty();
    });
  }

  const std::string shm_prefix_ = absl::StrCat("faults-", ::getpid());
  client::Buffer shared_;
  client::DaemonStatus own_;
  int baseline_fds_ = 0;
  std::mutex waiters_mu_;
};

TEST_F(FaultMatrixTest, ClientsKilledAtEveryPointLeaveNothingBehind) {
  ASSERT_TRUE(RunningAsRoot());  // the shared kind runs workers as uid 65534
  const uint64_t seed = EnvOr("SHMBROKER_FAULT_SEED", std::random_device{}());
  const uint64_t count = EnvOr("SHMBROKER_FAULT_TRIALS", kDefaultTrials);
  const uint64_t lanes =
      std::max<uint64_t>(1, EnvOr("SHMBROKER_FAULT_LANES", kDefaultLanes));
  std::printf(
      "fault matrix: SHMBROKER_FAULT_SEED=%lu SHMBROKER_FAULT_TRIALS=%lu"
      " (%lu at once)\n",
      seed, count, lanes);
  std::fflush(stdout);
  const std::vector<Trial> trials = MakeTrials(seed, count);
  std::map<std::string, int> killed_at;
  const absl::Time start = absl::Now();
  for (size_t first = 0; first < trials.size(); first += kTrialsPerBatch) {
    const size_t end = std::min(trials.size(), first + kTrialsPerBatch);
    std::atomic<size_t> next{first};
    std::mutex failures_mu;
    std::vector<std::string> failures;
    std::vector<std::thread> threads;
    for (uint64_t lane = 0; lane < lanes; ++lane) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < end; i = next++) {
          const std::string failed = Run(trials[i]);
          if (failed.empty()) continue;
          std::lock_guard<std::mutex> lock(failures_mu);
          failures.push_back(trials[i].ToString() + ": " + failed);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    for (const std::string& f : failures) ADD_FAILURE() << f;
    for (size_t i = first; i < end; ++i) {
      ++killed_at[absl::StrCat(trials[i].op, " ", trials[i].kind, " at ",
                               PointOf(trials[i].op))];
    }
    ASSERT_TRUE(BackToBaseline(absl::StrCat(
        "after trials ", first, "-", end - 1, " (seed ", seed,
        "): only the test's own buffer, hold, lease and connection, no "
        "waiter, fds at baseline, nothing in /dev/shm")));
    ASSERT_TRUE(failures.empty()) << "seed " << seed;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("fault matrix: %zu trials in %.1f s (%.1f trials/s), seed %lu\n",
              trials.size(), seconds, trials.size() / seconds, seed);
  for (const auto& [point, n] : killed_at) {
    std::printf("  %-40s %d\n", point.c_str(), n);
  }
  // Every (operation, kind) pair was killed at least once.
  EXPECT_EQ(killed_at.size(),
            std::min<size_t>(count, std::size(kOps) * std::size(kKinds)));
}

}  // namespace
}  // namespace shmbroker::testing
