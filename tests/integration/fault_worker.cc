// fault_worker: the victim of the fault matrix (fault_matrix_test.cc). It
// does one operation ROUNDS times on buffers of one kind, keeping what it
// gets, so that a pause point set with SHMBROKER_TEST_PAUSE_AT=POINT:ROUNDS
// stops it in the last round with ROUNDS - 1 earlier results held; the test
// then SIGKILLs it. Its stderr is its stdout, so the test reads the pause
// line and the worker's own lines from one pipe.
//   fault_worker SOCKET OP KIND ROUNDS TAG [SHARED]
// OP:
//   allocate   allocate (allocate_reply)
//   attach     allocate one buffer (KIND shared: take SHARED), then attach
//              it (attach_reply)
//   release    allocate (shared: attach SHARED), then drop it (release_sent)
//   hold       allocate; prints "holding" after ROUNDS and waits
//   keepalive  a lease of 600 ms with a buffer under it, renewed by the
//              library (keepalive_sent)
//   seal       allocate a named buffer, fill it, seal it (seal_reply)
//   wait       a second thread allocates and seals TAG-w while the main one
//              waits for it sealed (attach_reply, once the wait ended)
//   blocked    prints "waiting", then waits for a buffer nobody makes
//   watch      watches prefix TAG-, allocates named buffers and reads the
//              event of each (watch_event)
// KIND: pooled, dedicated (memfd), posix, shared (dedicated, shared with
// uid 0 read-write; the test runs this worker as another uid), detached
// (dedicated, under a detached lease of 1 s).
// Prints "finished" after ROUNDS rounds and waits to be killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "shmbroker/client.h"
#include "shmbroker/watcher.h"

namespace {

using shmbroker::Buffer;
using shmbroker::Client;
namespace client = shmbroker::client;

[[noreturn]] void Fail(const std::string& what, const absl::Status& status) {
  std::printf("fault_worker: %s: %s\n", what.c_str(),
              status.ToString().c_str());
  std::fflush(stdout);
  std::_Exit(1);
}

void Say(const char* line) {
  std::printf("%s\n", line);
  std::fflush(stdout);
}

[[noreturn]] void WaitToBeKilled() {
  for (;;) ::pause();
}

struct Worker {
  Client& c;
  std::string kind;
  std::string tag;
  uint64_t lease = 0;  // the detached lease, for KIND detached
  std::vector<Buffer> held;

  client::AllocateOptions Options(int round, bool named) const {
    client::AllocateOptions o;
    o.size = uint64_t{4096} << (round % 4);
    if (named) o.name = absl::StrCat(tag, "-", round);
    o.lease_id = lease;
    if (kind == "pooled") {
      o.kind = client::Kind::kPooled;
      o.size = uint64_t{64} << (round % 9);
    } else {
      o.kind = client::Kind::kDedicated;
    }
    if (kind == "posix") {
      o.backing = client::Backing::kPosix;
      o.name = absl::StrCat(tag, "-", round);  // POSIX buffers have names
    }
    if (kind == "shared") {
      o.share.push_back({client::ShareRule::Scope::kUid, 0, true});
    }
    return o;
  }

  Buffer Allocate(int round, bool named = false) {
    absl::StatusOr<Buffer> b = c.Allocate(Options(round, named));
    if (!b.ok()) Fail("allocate", b.status());
    std::memset(b->data(), round, b->size());
    return std::move(*b);
  }
};

}  // namespace

int main(int argc, char** argv) {
  ::dup2(STDOUT_FILENO, STDERR_FILENO);
  if (argc < 6) {
    Say("usage: fault_worker SOCKET OP KIND ROUNDS TAG [SHARED]");
    return 2;
  }
  client::ClientOptions options;
  options.socket_path = argv[1];
  const std::string op = argv[2];
  const int rounds = std::atoi(argv[4]);
  const std::string shared = argc > 6 ? argv[6] : "";
  absl::StatusOr<std::unique_ptr<Client>> connected = Client::Connect(options);
  if (!connected.ok()) Fail("connect", connected.status());
  Worker w{**connected, argv[3], argv[5], 0, {}};
  if (w.kind == "detached") {
    absl::StatusOr<client::LeaseInfo> lease =
        w.c.GrantLease(absl::Seconds(1), /*detached=*/true);
    if (!lease.ok()) Fail("grant", lease.status());
    w.lease = lease->id;
  }

  if (op == "blocked") {
    Say("waiting");
    client::WaitOptions wait;
    wait.timeout = absl::Minutes(5);
    wait.lease_id = w.lease;
    absl::StatusOr<Buffer> never = w.c.AttachWhen(w.tag + "-never", wait);
    Fail("the wait ended", never.status());
  }
  if (op == "wait") {
    // The producer runs beside the wait: whichever comes first, the wait
    // ends with the sealed buffer, through attach_reply exactly once.
    std::thread producer([&w] {
      absl::StatusOr<Buffer> b = w.c.Allocate([&w] {
        client::AllocateOptions o = w.Options(0, true);
        o.name = w.tag + "-w";
        return o;
      }());
      if (!b.ok()) Fail("produce", b.status());
      if (absl::Status s = b->Seal(); !s.ok()) Fail("seal", s);
      b->Disown();
    });
    client::WaitOptions wait;
    wait.until = client::WaitOptions::Until::kSealed;
    wait.timeout = absl::Minutes(5);
    wait.lease_id = w.lease;
    absl::StatusOr<Buffer> got = w.c.AttachWhen(w.tag + "-w", wait);
    if (!got.ok()) Fail("wait", got.status());
    producer.join();
    Say("finished");
    WaitToBeKilled();
  }
  if (op == "watch") {
    absl::StatusOr<std::unique_ptr<client::Watcher>> watcher =
        w.c.Watch(w.tag + "-");
    if (!watcher.ok()) Fail("watch", watcher.status());
    for (int round = 1; round <= rounds; ++round) {
      w.held.push_back(w.Allocate(round, /*named=*/true));
      absl::StatusOr<client::WatchEvent> event =
          (*watcher)->Next(absl::Now() + absl::Minutes(1));
      if (!event.ok()) Fail("watch event", event.status());
    }
    Say("finished");
    WaitToBeKilled();
  }
  if (op == "keepalive") {
    absl::StatusOr<client::LeaseInfo> lease =
        w.c.GrantLease(absl::Milliseconds(600), w.kind == "detached");
    if (!lease.ok()) Fail("grant", lease.status());
    w.lease = lease->id;
    w.held.push_back(w.Allocate(0));
    Say("holding");
    WaitToBeKilled();
  }

  // The attach target: the test's buffer for KIND shared, else our own.
  std::string target = shared;
  if (op == "attach" && w.kind != "shared") {
    w.held.push_back(w.Allocate(0, /*named=*/true));
    target = w.held.back().info().name;
  }
  for (int round = 1; round <= rounds; ++round) {
    if (op == "allocate" || op == "hold") {
      w.held.push_back(w.Allocate(round));
    } else if (op == "attach" || (op == "release" && w.kind == "shared")) {
      absl::StatusOr<Buffer> b =
          w.c.Attach(target, client::Access::kDefault, w.lease);
      if (!b.ok()) Fail("attach", b.status());
      if (op == "attach") w.held.push_back(std::move(*b));
    } else if (op == "release") {
      w.Allocate(round);  // dropped at once: a one-way Release
    } else if (op == "seal") {
      Buffer b = w.Allocate(round, /*named=*/true);
      if (absl::Status s = b.Seal(); !s.ok()) Fail("seal", s);
      w.held.push_back(std::move(b));
    } else {
      Say("fault_worker: unknown OP");
      return 2;
    }
  }
  Say(op == "hold" ? "holding" : "finished");
  WaitToBeKilled();
}
