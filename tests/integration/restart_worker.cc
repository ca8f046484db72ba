// restart_worker: a client process of the restart matrix
// (restart_matrix_test.cc). It holds buffers of known patterns (byte i of
// buffer H is RestartPattern(H, i)) across daemon restarts and reports, on
// stdout, one line per event:
//   resume N adopted=A refused=R lost=L   each resume (the Nth), with what
//                                         the new daemon took back
//   check N ok|BAD ...                    after each SIGUSR1 (the Nth)
//
//   restart_worker SOCKET holder TAG SHARE_UID
//     Holds, besides its default lease, a lease of 2 s TTL (kept alive by
//     the library) and under it: two pooled buffers, a dedicated one, a
//     POSIX one (TAG-posix), a sealed one (TAG-sealed) and one shared
//     read-only with SHARE_UID (TAG-shared). Prints "ready", then churns:
//     allocates, fills and drops (one-way Release) a pooled or dedicated
//     buffer in a loop, so that the daemon dies mid-Allocate and
//     mid-Release. On SIGUSR1 it stops churning, checks every byte it
//     holds and that its leases live, releases its dedicated buffer
//     (Release, waiting for the answer) and allocates a new one, and
//     prints "check N ok handles=H:BYTES,... leases=L,..." (what it holds
//     and which leases it keeps). SIGUSR2 starts the churn again.
//   restart_worker SOCKET reader NAME...
//     Attaches each NAME read-only, prints "ready"; on SIGUSR1 checks
//     every byte and prints "check N ok handles=... leases=...".
//   restart_worker SOCKET producer NAME BACKING TTL
//     Grants a detached lease of TTL, allocates NAME (BACKING memfd or
//     posix) under it, fills it, disowns it and exits after printing
//     "produced HANDLE LEASE": the daemon alone holds it.
// Every line is flushed; stderr is stdout.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "shmbroker/client.h"
#include "tests/integration/restart_support.h"

namespace {

namespace client = shmbroker::client;
using shmbroker::Buffer;
using shmbroker::Client;

using shmbroker::testing::RestartPattern;

void Fill(Buffer& b) {
  for (size_t i = 0; i < b.size(); ++i) {
    b.data()[i] = RestartPattern(b.handle(), i);
  }
}

// "" when every byte is the pattern's.
std::string Mismatch(const Buffer& b) {
  for (size_t i = 0; i < b.size(); ++i) {
    if (b.data()[i] != RestartPattern(b.handle(), i)) {
      return absl::StrCat("buffer ", b.handle(), " (", b.info().name, ") byte ",
                          i, " is ", b.data()[i], ", not ",
                          RestartPattern(b.handle(), i));
    }
  }
  return "";
}

absl::Mutex print_mu;

void Say(const std::string& line) {
  absl::MutexLock lock(&print_mu);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

[[noreturn]] void Fail(const std::string& what, const absl::Status& status) {
  Say(absl::StrCat("restart_worker: ", what, ": ", status.ToString()));
  std::_Exit(1);
}

std::atomic<int> checks_asked{0};
std::atomic<bool> churning{true};

// SIGUSR1 and SIGUSR2 are blocked in every thread (so that no library
// call sees EINTR) and taken here.
void TakeSignals(sigset_t set) {
  for (;;) {
    int signal = 0;
    if (::sigwait(&set, &signal) != 0) continue;
    if (signal == SIGUSR1) checks_asked.fetch_add(1);
    if (signal == SIGUSR2) churning.store(true);
  }
}

struct Resumes {
  std::atomic<int> count{0};
  std::atomic<int> refused{0};  // over all resumes
  std::atomic<int> lost{0};     // leases lost, over all resumes
};

client::ClientOptions Options(const char* socket, Resumes* resumes) {
  client::ClientOptions options;
  options.socket_path = socket;
  options.on_resumed = [resumes](const client::ResumeReport& r) {
    const int n = resumes->count.fetch_add(1) + 1;
    resumes->refused += static_cast<int>(r.buffers_refused.size());
    resumes->lost += static_cast<int>(r.leases_lost.size());
    std::string why;
    for (const auto& [handle, status] : r.buffers_refused) {
      absl::StrAppend(&why, " buffer ", handle, ": ", status.ToString(), ";");
    }
    for (const auto& [lease, status] : r.leases_lost) {
      absl::StrAppend(&why, " lease ", lease, ": ", status.ToString(), ";");
    }
    Say(absl::StrCat("resume ", n, " adopted=", r.buffers_adopted.size(),
                     " refused=", r.buffers_refused.size(),
                     " lost=", r.leases_lost.size(), why));
  };
  options.on_lease_lost = [resumes](uint64_t id, const absl::Status& why) {
    ++resumes->lost;
    Say(absl::StrCat("lease lost ", id, ": ", why.ToString()));
  };
  return options;
}

// What a check reports: every buffer held, with its charged bytes, and the
// leases this process keeps (as the daemon lists them for its pid).
std::string Holdings(Client& c, const std::vector<const Buffer*>& held,
                     std::string* bad) {
  std::vector<std::string> handles;
  for (const Buffer* b : held) {
    if (std::string m = Mismatch(*b); !m.empty()) *bad = m;
    if (absl::Status s = b->lease_status(); !s.ok()) {
      *bad = absl::StrCat("buffer ", b->handle(), ": ", s.ToString());
    }
    handles.push_back(absl::StrCat(b->handle(), ":", b->info().charged_bytes));
  }
  std::vector<uint64_t> leases;
  absl::StatusOr<std::vector<client::LeaseInfo>> listed = c.ListLeases();
  if (!listed.ok()) {
    *bad = absl::StrCat("ListLeases: ", listed.status().ToString());
  } else {
    for (const client::LeaseInfo& l : *listed) {
      if (l.owner_pid == ::getpid()) leases.push_back(l.id);
    }
  }
  return absl::StrCat("handles=", absl::StrJoin(handles, ","),
                      " leases=", absl::StrJoin(leases, ","));
}

void Report(int n, const std::string& bad, const std::string& holdings,
            const Resumes& resumes) {
  Say(absl::StrCat(
      "check ", n, bad.empty() ? " ok " : " BAD ", holdings,
      " resumes=", resumes.count.load(), " refused=", resumes.refused.load(),
      " lost=", resumes.lost.load(), bad.empty() ? "" : " why: ", bad));
}

int Holder(Client& c, const std::string& tag, uint32_t share_uid,
           const Resumes& resumes) {
  // Longer than the worst outage a loaded (or sanitized) CI machine gives
  // one round: a lease whose TTL runs out while the daemon is away is lost,
  // as it should be, and the round would fail on that, not on a bug.
  absl::StatusOr<client::LeaseInfo> lease = c.GrantLease(absl::Seconds(6));
  if (!lease.ok()) Fail("grant", lease.status());
  auto allocate = [&](client::AllocateOptions o) {
    o.lease_id = lease->id;
    absl::StatusOr<Buffer> b = c.Allocate(o);
    if (!b.ok()) Fail(absl::StrCat("allocate ", o.name), b.status());
    Fill(*b);
    return std::move(*b);
  };
  std::vector<Buffer> held;
  held.push_back(allocate({.size = 4096, .kind = client::Kind::kPooled}));
  held.push_back(allocate({.size = 200, .kind = client::Kind::kPooled}));
  held.push_back(allocate({.size = 1 << 20, .kind = client::Kind::kDedicated}));
  held.push_back(allocate({.size = 64 << 10,
                           .name = tag + "-posix",
                           .backing = client::Backing::kPosix}));
  {
    Buffer sealed = allocate({.size = 12288,
                              .name = tag + "-sealed",
                              .kind = client::Kind::kDedicated});
    if (absl::Status s = sealed.Seal(); !s.ok()) Fail("seal", s);
    held.push_back(std::move(sealed));
  }
  {
    client::AllocateOptions shared{.size = 32 << 10,
                                   .name = tag + "-shared",
                                   .kind = client::Kind::kDedicated};
    shared.share.push_back(
        {client::ShareRule::Scope::kUid, share_uid, /*read_write=*/false});
    held.push_back(allocate(shared));
  }
  constexpr size_t kDedicated = 2;  // rotated by each check
  Say("ready");

  int checks = 0;
  uint64_t churned = 0, churn_failures = 0;
  for (int round = 0;; ++round) {
    if (checks_asked.load() > checks) {
      churning = false;
      ++checks;
      std::string bad;
      // The old clients keep working: a Release answered by the new
      // daemon, and an allocation in its place.
      if (absl::Status s = held[kDedicated].Release(); !s.ok()) {
        bad = absl::StrCat("release ", held[kDedicated].handle(), ": ",
                           s.ToString());
      }
      held[kDedicated] =
          allocate({.size = 1 << 20, .kind = client::Kind::kDedicated});
      if (absl::StatusOr<client::LeaseInfo> ttl = c.LeaseTimeToLive(lease->id);
          !ttl.ok()) {
        bad = absl::StrCat("lease ", lease->id, ": ", ttl.status().ToString());
      }
      std::vector<const Buffer*> all;
      for (const Buffer& b : held) all.push_back(&b);
      const std::string holdings = Holdings(c, all, &bad);
      Report(checks, bad,
             absl::StrCat(holdings, " churned=", churned,
                          " churn_failures=", churn_failures),
             resumes);
      continue;
    }
    if (!churning.load()) {
      ::usleep(2000);
      continue;
    }
    client::AllocateOptions o;
    if (round % 2 == 0) {
      o.size = uint64_t{64} << (round % 7);
      o.kind = client::Kind::kPooled;
    } else {
      o.size = 8192;
      o.kind = client::Kind::kDedicated;
    }
    absl::StatusOr<Buffer> b = c.Allocate(o);
    if (!b.ok()) {
      // The daemon is away (or was killed mid-call): try again soon.
      ++churn_failures;
      ::usleep(5000);
      continue;
    }
    Fill(*b);
    ++churned;
    // Dropped here: a one-way Release.
  }
}

int Reader(Client& c, const std::vector<std::string>& names,
           const Resumes& resumes) {
  std::vector<Buffer> held;
  for (const std::string& name : names) {
    absl::StatusOr<Buffer> b = c.Attach(name, client::Access::kReadOnly);
    if (!b.ok()) Fail(absl::StrCat("attach ", name), b.status());
    held.push_back(std::move(*b));
  }
  Say("ready");
  for (int checks = 0;;) {
    if (checks_asked.load() <= checks) {
      ::usleep(2000);
      continue;
    }
    ++checks;
    std::string bad;
    std::vector<const Buffer*> all;
    for (const Buffer& b : held) {
      if (!b.read_only())
        bad = absl::StrCat("buffer ", b.handle(), " writable");
      all.push_back(&b);
    }
    const std::string holdings = Holdings(c, all, &bad);
    Report(checks, bad, holdings, resumes);
  }
}

int Producer(Client& c, const std::string& name, const std::string& backing,
             absl::Duration ttl) {
  absl::StatusOr<client::LeaseInfo> lease = c.GrantLease(ttl, true);
  if (!lease.ok()) Fail("grant", lease.status());
  client::AllocateOptions o{.size = 16384, .name = name, .lease_id = lease->id};
  o.kind = client::Kind::kDedicated;
  o.backing =
      backing == "posix" ? client::Backing::kPosix : client::Backing::kMemfd;
  absl::StatusOr<Buffer> b = c.Allocate(o);
  if (!b.ok()) Fail("allocate", b.status());
  Fill(*b);
  Say(absl::StrCat("produced ", b->handle(), " ", lease->id));
  b->Disown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::dup2(STDOUT_FILENO, STDERR_FILENO);
  if (argc < 4) {
    Say("usage: restart_worker SOCKET holder|reader|producer ...");
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread(TakeSignals, signals).detach();

  Resumes resumes;
  absl::StatusOr<std::unique_ptr<Client>> c =
      Client::Connect(Options(argv[1], &resumes));
  if (!c.ok()) Fail("connect", c.status());
  const std::string role = argv[2];
  if (role == "holder" && argc == 5) {
    uint32_t uid = 0;
    if (!absl::SimpleAtoi(argv[4], &uid)) return 2;
    return Holder(**c, argv[3], uid, resumes);
  }
  if (role == "reader") {
    return Reader(**c, std::vector<std::string>(argv + 3, argv + argc),
                  resumes);
  }
  if (role == "producer" && argc == 6) {
    absl::Duration ttl;
    if (!absl::ParseDuration(argv[5], &ttl)) return 2;
    return Producer(**c, argv[3], argv[4], ttl);
  }
  Say("restart_worker: bad arguments");
  return 2;
}
