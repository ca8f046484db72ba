// The seeded restart matrix (issue 14): client processes (restart_worker)
// hold buffers of every kind (pooled, dedicated, POSIX, sealed, shared
// read-only with another uid, detached) with known patterns while they
// allocate and release in a loop; the daemon is SIGKILLed (every fifth
// round: stopped with SIGTERM, the upgrade path) at a seeded moment, and
// restarted on the same socket and state directory. Some rounds also
// SIGKILL a client while the daemon is down. After each restart:
//   - every live client resumed with nothing refused and no lease lost,
//     its bytes are intact, its Release, KeepAlive and Allocate work;
//   - once the grace is over, the daemon holds exactly what the live
//     clients hold (buffers, bytes, and holds), the detached memfd buffer
//     (memory only the daemon held) is gone, counted not_resumed, and the
//     detached POSIX one survived by name;
//   - /dev/shm has exactly the names of the live POSIX buffers.
// At the end the leases are exactly the live ones (each holder's 2 s lease
// alive long past its TTL since the last restart: renewed by the new
// daemon), and after a final SIGINT no name of the daemon's prefix is left.
//
//   SHMBROKER_RESTART_SEED=N     the seed (printed; random when unset)
//   SHMBROKER_RESTART_ROUNDS=N   rounds (20)
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/restart_support.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

constexpr uint32_t kNobody = 65534;
constexpr int kHolders = 4;
// Clients resume within ~100 ms of the restart here: 15 times that, and
// twice as much again under ASan.
#if defined(__SANITIZE_ADDRESS__)
constexpr absl::Duration kGrace = absl::Seconds(3);
#else
constexpr absl::Duration kGrace = absl::Milliseconds(1500);
#endif
constexpr absl::Duration kHolderLeaseTtl = absl::Seconds(2);  // worker's
constexpr char kDetachedPosix[] = "detached-posix";

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  uint64_t parsed = 0;
  return value != nullptr && absl::SimpleAtoi(value, &parsed) ? parsed
                                                              : fallback;
}

// One restart_worker process and what it last reported.
struct Worker {
  std::string tag;
  std::unique_ptr<Subprocess> process;
  int resumes = 0;  // reported so far
  int checks = 0;
  std::map<uint64_t, uint64_t> handles;  // held: handle -> charged bytes
  std::set<uint64_t> leases;
  uint64_t churn_failures = 0;  // allocations refused by a dying daemon
};

// The line of `w`'s output that starts with `head` (e.g. "check 3 "), once
// it is complete; nullopt if it does not come.
std::optional<std::string> AwaitLine(Worker& w, const std::string& head) {
  std::optional<std::string> out =
      w.process->WaitForOutput(head, kStateDeadline);
  if (!out.has_value()) return std::nullopt;
  const size_t at = out->rfind(head);
  return out->substr(at, out->find('\n', at) - at);
}

// A field "key=a,b,c" of a report line: its comma-separated values.
std::vector<std::string> Field(const std::string& line,
                               const std::string& key) {
  for (absl::string_view word : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&word, key + "=")) {
      return absl::StrSplit(word, ',', absl::SkipEmpty());
    }
  }
  return {};
}

class RestartMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RunningAsRoot());  // the reader runs as another uid
    char tmpl[] = "/tmp/shmbroker-rmatrix-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::chmod(dir_.c_str(), 0711);
    StartDaemon();
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
    ShareCliWithOtherUids(*daemon_);
    worker_copy_ = dir_ + "/restart_worker";
    std::filesystem::copy_file(RESTART_WORKER_PATH, worker_copy_);
    ::chmod(worker_copy_.c_str(), 0755);
    client::ClientOptions options;
    options.socket_path = daemon_->socket();
    options.on_resumed = [this](const client::ResumeReport&) {
      own_resumes_.fetch_add(1);
    };
    auto c = client::Client::Connect(options);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    workers_.clear();
    client_.reset();
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void StartDaemon() {
    daemon_ = std::make_unique<TestDaemon>(
        std::vector<std::string>{
            "--state_dir=" + dir_ + "/state",
            absl::StrCat("--restart_grace=", absl::FormatDuration(kGrace)),
            "--lease_default_ttl=2s", "--socket_group=65534",
            "--shm_prefix=" + shm_prefix_},
        dir_);
  }

  std::unique_ptr<Worker> StartWorker(const std::string& tag,
                                      std::vector<std::string> args,
                                      bool as_nobody = false) {
    auto w = std::make_unique<Worker>();
    w->tag = tag;
    std::vector<std::string> argv, env;
    if (as_nobody) {
      argv = {"/usr/bin/setpriv",
              "--reuid=65534",
              "--regid=65534",
              "--clear-groups",
              "--",
              worker_copy_};
      env = CliEnvAs(*daemon_);
    } else {
      argv = {RESTART_WORKER_PATH};
    }
    argv.push_back(daemon_->socket());
    argv.insert(argv.end(), args.begin(), args.end());
    w->process = std::make_unique<Subprocess>(argv, "", env);
    return w;
  }

  // A holder that has allocated everything, or a failure.
  ::testing::AssertionResult AddHolder(const std::string& tag) {
    std::unique_ptr<Worker> w =
        StartWorker(tag, {"holder", tag, std::to_string(kNobody)});
    if (!w->process->WaitForOutput("ready", kStateDeadline)) {
      return ::testing::AssertionFailure()
             << "holder " << tag << " not ready: " << w->process->Wait().out;
    }
    workers_.push_back(std::move(w));
    return ::testing::AssertionSuccess();
  }

  // A producer's buffer under a detached lease, the producer gone: returns
  // the lease.
  uint64_t Produce(const std::string& name, const std::string& backing,
                   const std::string& ttl) {
    std::unique_ptr<Worker> w =
        StartWorker("producer", {"producer", name, backing, ttl});
    const std::optional<std::string> line = AwaitLine(*w, "produced ");
    const Finished f = w->process->Wait();
    EXPECT_EQ(f.exit_code, 0) << f.out;
    if (!line.has_value()) {
      ADD_FAILURE() << "no \"produced\" line: " << f.out;
      return 0;
    }
    std::vector<std::string> words = absl::StrSplit(*line, ' ');
    uint64_t lease = 0;
    EXPECT_TRUE(words.size() == 3 && absl::SimpleAtoi(words[2], &lease))
        << *line;
    return lease;
  }

  void Restart(int signal) {
    if (signal == SIGKILL) {
      daemon_->Kill();
    } else {
      Finished f = daemon_->Stop(SIGTERM);
      EXPECT_TRUE(ExitedCleanly(f));
    }
    daemon_.reset();
  }

  // Each worker's report of its Nth resume; "" when all came, else what
  // went wrong.
  std::string AwaitResumes() {
    std::string failed;
    for (auto& w : workers_) {
      const std::string head = absl::StrCat("resume ", ++w->resumes, " ");
      const std::optional<std::string> line = AwaitLine(*w, head);
      if (!line.has_value()) {
        absl::StrAppend(&failed, w->tag, ": no \"", head, "\"; ");
      } else if (!absl::StrContains(*line, " refused=0 lost=0")) {
        absl::StrAppend(&failed, w->tag, ": ", *line, "; ");
      }
    }
    return failed;
  }

  // Asks every worker to check its bytes, and reads what each holds.
  std::string CheckWorkers() {
    for (auto& w : workers_) w->process->Signal(SIGUSR1);
    std::string failed;
    for (auto& w : workers_) {
      const std::string head = absl::StrCat("check ", ++w->checks, " ");
      const std::optional<std::string> line = AwaitLine(*w, head);
      if (!line.has_value() || !absl::StartsWith(*line, head + "ok ") ||
          !absl::StrContains(*line, " refused=0 lost=0")) {
        absl::StrAppend(&failed, w->tag, ": ", line.value_or("no " + head),
                        "; ");
        continue;
      }
      w->handles.clear();
      for (const std::string& h : Field(*line, "handles")) {
        std::pair<std::string, std::string> parts = absl::StrSplit(h, ':');
        uint64_t handle = 0, bytes = 0;
        EXPECT_TRUE(absl::SimpleAtoi(parts.first, &handle) &&
                    absl::SimpleAtoi(parts.second, &bytes))
            << *line;
        w->handles[handle] = bytes;
      }
      for (const std::string& n : Field(*line, "churn_failures")) {
        EXPECT_TRUE(absl::SimpleAtoi(n, &w->churn_failures)) << *line;
      }
      w->leases.clear();
      for (const std::string& l : Field(*line, "leases")) {
        uint64_t id = 0;
        EXPECT_TRUE(absl::SimpleAtoi(l, &id)) << *line;
        w->leases.insert(id);
      }
    }
    return failed;
  }

  std::string dir_;
  std::string worker_copy_;
  const std::string shm_prefix_ = absl::StrCat("rmatrix-", ::getpid());
  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<client::Client> client_;
  std::vector<std::unique_ptr<Worker>> workers_;  // holders, then the reader
  std::atomic<int> own_resumes_{0};               // client_'s
};

TEST_F(RestartMatrixTest, ClientsKeepTheirMemoryAcrossSeededRestarts) {
  const uint64_t seed = EnvOr("SHMBROKER_RESTART_SEED", std::random_device{}());
  const uint64_t rounds = EnvOr("SHMBROKER_RESTART_ROUNDS", 20);
  std::printf(
      "restart matrix: SHMBROKER_RESTART_SEED=%lu "
      "SHMBROKER_RESTART_ROUNDS=%lu\n",
      seed, rounds);
  std::fflush(stdout);
  std::mt19937_64 random(seed);
  const absl::Time start = absl::Now();

  // Holders h0..h3, a reader (another uid) of their shared buffers, and a
  // POSIX buffer under a detached lease whose producer exited.
  std::vector<std::string> shared;
  for (int i = 0; i < kHolders; ++i) {
    const std::string tag = absl::StrCat("h", i);
    ASSERT_TRUE(AddHolder(tag));
    shared.push_back(tag + "-shared");
  }
  {
    std::vector<std::string> args = {"reader"};
    args.insert(args.end(), shared.begin(), shared.end());
    std::unique_ptr<Worker> reader =
        StartWorker("reader", args, /*as_nobody=*/true);
    ASSERT_TRUE(reader->process->WaitForOutput("ready", kStateDeadline))
        << reader->process->Wait().out;
    workers_.push_back(std::move(reader));
  }
  const uint64_t posix_lease = Produce(kDetachedPosix, "posix", "10m");
  ASSERT_NE(posix_lease, 0u);
  auto posix_info = client_->Describe(kDetachedPosix);
  ASSERT_TRUE(posix_info.ok()) << posix_info.status();
  ASSERT_TRUE(CheckWorkers().empty());

  int next_holder = kHolders;
  int sigterms = 0, clients_killed = 0;
  uint64_t not_resumed_total = 0, churn_failures = 0;
  absl::Time last_restart;
  for (uint64_t round = 0; round < rounds; ++round) {
    const int signal = round % 5 == 2 ? SIGTERM : SIGKILL;
    const absl::Duration kill_after =
        absl::Milliseconds(static_cast<int64_t>(random() % 300));
    // Which holder to kill while the daemon is down (-1: none).
    const int victim =
        random() % 3 == 0 ? static_cast<int>(random() % kHolders) : -1;
    const std::string where =
        absl::StrCat("round ", round, " (seed ", seed, ", ",
                     signal == SIGKILL ? "SIGKILL" : "SIGTERM", " after ",
                     absl::FormatDuration(kill_after),
                     victim >= 0 ? ", a holder killed meanwhile" : "", ")");
    SCOPED_TRACE(where);
    const absl::Time round_start = absl::Now();

    // Memory only the daemon holds: lost at the restart (not POSIX).
    const std::string lost_name = absl::StrCat("detached-memfd-", round);
    const uint64_t lost_lease = Produce(lost_name, "memfd", "10m");
    ASSERT_NE(lost_lease, 0u);

    for (int i = 0; i < kHolders; ++i) workers_[i]->process->Signal(SIGUSR2);
    absl::SleepFor(kill_after);  // a seeded moment of the churn, not a TTL
    Restart(signal);
    if (victim >= 0) {
      Worker& dead = *workers_[victim];
      dead.process->Signal(SIGKILL);
      dead.process->Wait();
      churn_failures += dead.churn_failures;
      workers_.erase(workers_.begin() + victim);
      ++clients_killed;
    }
    StartDaemon();
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
    last_restart = absl::Now();
    if (signal == SIGTERM) ++sigterms;
    {
      const std::string failed = AwaitResumes();
      ASSERT_TRUE(failed.empty()) << failed;
    }
    const absl::Duration resumed_after = absl::Now() - last_restart;
    if (victim >= 0) {
      // A new holder takes the dead one's place (before the reader).
      std::unique_ptr<Worker> reader = std::move(workers_.back());
      workers_.pop_back();
      ASSERT_TRUE(AddHolder(absl::StrCat("h", next_holder++)));
      workers_.push_back(std::move(reader));
    }

    // New allocations work (the test's own client resumed too).
    ASSERT_TRUE(WaitFor("the test's client resumed", [&](std::string* seen) {
      *seen = absl::StrCat(own_resumes_.load(), " resumes");
      return own_resumes_.load() == static_cast<int>(round) + 1;
    }));
    {
      auto fresh = client_->Allocate({.size = 4096, .name = "fresh"});
      ASSERT_TRUE(fresh.ok()) << fresh.status();
      ASSERT_TRUE(fresh->Release().ok());
    }
    {
      const std::string failed = CheckWorkers();
      ASSERT_TRUE(failed.empty()) << failed;
    }

    // What the live clients hold, and the detached POSIX buffer.
    std::map<uint64_t, uint64_t> live;
    uint64_t live_holds = 1;  // the detached POSIX buffer's
    for (const auto& w : workers_) {
      live.insert(w->handles.begin(), w->handles.end());
      live_holds += w->handles.size();
    }
    live[posix_info->handle] = posix_info->charged_bytes;
    uint64_t live_bytes = 0;
    for (const auto& [handle, bytes] : live) live_bytes += bytes;

    // The grace ends: the detached memfd buffer and whatever else nobody
    // presented are dropped; a dead holder's buffers go with it (a POSIX
    // one when its leases end).
    ASSERT_TRUE(WaitFor("the grace over", [&](std::string* seen) {
      const double dropped = Metric(
          *daemon_, "shmbroker_restore_buffers_total{result=\"not_resumed\"}");
      *seen = absl::StrCat("not_resumed ", dropped);
      return dropped >= 1;
    }));
    EXPECT_TRUE(WaitForStatus(
        *client_,
        absl::StrCat("exactly the live clients' ", live.size(), " buffers (",
                     live_bytes, " bytes) and ", live_holds, " holds"),
        [&](const client::DaemonStatus& s) {
          return s.buffers == live.size() && s.allocated_bytes == live_bytes &&
                 s.holds == live_holds;
        }));
    const double not_resumed = Metric(
        *daemon_, "shmbroker_restore_buffers_total{result=\"not_resumed\"}");
    // At least the detached memfd buffer and the dead holder's memfd ones
    // (its POSIX one ends with its leases; its shared one if the reader
    // still holds it lives on); more when the daemon died mid-Allocate.
    EXPECT_GE(not_resumed, 1 + (victim >= 0 ? 4 : 0));
    not_resumed_total += static_cast<uint64_t>(not_resumed);
    EXPECT_EQ(client_->Describe(lost_name).status().code(),
              absl::StatusCode::kNotFound);
    {
      auto revoked = client_->RevokeLease(lost_lease);
      EXPECT_TRUE(revoked.ok()) << revoked.status();
    }
    // The detached POSIX buffer survived by name, bytes and all.
    {
      auto b = client_->Attach(kDetachedPosix, client::Access::kReadOnly);
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(b->handle(), posix_info->handle);
      EXPECT_EQ(RestartMismatch(b->data(), b->size(), b->handle()), "");
    }
    // Every live client's leases are the daemon's, and the names in
    // /dev/shm are exactly the live POSIX buffers'.
    {
      auto leases = client_->ListLeases();
      ASSERT_TRUE(leases.ok()) << leases.status();
      std::set<uint64_t> listed;
      for (const client::LeaseInfo& l : *leases) listed.insert(l.id);
      for (const auto& w : workers_) {
        for (uint64_t id : w->leases) {
          EXPECT_TRUE(listed.contains(id)) << w->tag << "'s lease " << id;
        }
      }
      auto buffers = client_->List();
      ASSERT_TRUE(buffers.ok()) << buffers.status();
      std::vector<std::string> names;
      for (const client::BufferInfo& b : *buffers) {
        if (!b.shm_name.empty()) names.push_back(b.shm_name.substr(1));
      }
      std::sort(names.begin(), names.end());
      EXPECT_EQ(ShmNames(shm_prefix_ + "."), names);
    }
    std::printf(
        "  round %2lu: %s after %3ld ms%s; all resumed %4ld ms after the "
        "restart; not_resumed %.0f; round took %ld ms\n",
        round, signal == SIGKILL ? "SIGKILL" : "SIGTERM",
        absl::ToInt64Milliseconds(kill_after),
        victim >= 0 ? ", a holder killed" : "",
        absl::ToInt64Milliseconds(resumed_after), not_resumed,
        absl::ToInt64Milliseconds(absl::Now() - round_start));
    std::fflush(stdout);
    if (HasFailure()) break;
  }

  // KeepAlive: each holder's lease of 2 s outlives its TTL plus the grace
  // since the last restart (a restored lease gets TTL + grace at most).
  ASSERT_TRUE(WaitFor("more than the lease TTL and grace since the restart",
                      [&](std::string* seen) {
                        *seen =
                            absl::FormatDuration(absl::Now() - last_restart);
                        return absl::Now() - last_restart >
                               kHolderLeaseTtl + kGrace + absl::Seconds(1);
                      }));
  {
    const std::string failed = CheckWorkers();
    ASSERT_TRUE(failed.empty()) << failed;
  }
  // The leases are exactly the live clients' (the dead ones ran out), the
  // detached POSIX buffer's and the test's own.
  std::set<uint64_t> want = {posix_lease};
  for (const auto& w : workers_)
    want.insert(w->leases.begin(), w->leases.end());
  EXPECT_TRUE(WaitFor("exactly the live leases", [&](std::string* seen) {
    auto leases = client_->ListLeases();
    if (!leases.ok()) return false;
    std::set<uint64_t> listed;
    for (const client::LeaseInfo& l : *leases) {
      if (l.owner_pid != ::getpid()) listed.insert(l.id);
    }
    *seen = absl::StrCat("listed ", absl::StrJoin(listed, ","), "; want ",
                         absl::StrJoin(want, ","));
    return listed == want;
  }));

  for (const auto& w : workers_) churn_failures += w->churn_failures;
  // Everything goes with its holders; a stop for good leaves no name.
  workers_.clear();  // SIGKILLed
  ASSERT_TRUE(client_->RevokeLease(posix_lease).ok());
  EXPECT_TRUE(WaitForStatus(
      *client_, "every buffer reclaimed", [](const client::DaemonStatus& s) {
        return s.buffers == 0 && s.holds == 0 && s.allocated_bytes == 0;
      }));
  client_.reset();
  const Finished f = daemon_->Stop(SIGINT);
  EXPECT_TRUE(ExitedCleanly(f));
  daemon_.reset();
  EXPECT_EQ(ShmNames(shm_prefix_ + "."), std::vector<std::string>{});

  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "restart matrix: %lu rounds (%d SIGTERM, %d clients killed in the "
      "outage, %lu buffers not resumed, %lu churn allocations failed by a "
      "daemon down or dying) in %.1f s, seed %lu\n",
      rounds, sigterms, clients_killed, not_resumed_total, churn_failures,
      seconds, seed);
}

}  // namespace
}  // namespace shmbroker::testing
