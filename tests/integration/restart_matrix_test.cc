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
// At the end the leases are exactly the live ones (each holder's 6 s lease
// alive long past its TTL since the last restart: renewed by the new
// daemon), and after a final SIGINT no name of the daemon's prefix is left.
//
//   SHMBROKER_RESTART_SEED=N     the seed (printed; random when unset)
//   SHMBROKER_RESTART_ROUNDS=N   rounds (20)
#include <signal.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/integration/restart_matrix_fixture.h"

namespace shmbroker::testing {
namespace {

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

  // KeepAlive: each holder's lease of 6 s outlives its TTL plus the grace
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
