// shmbroker-books-bench: what the books journal (server/books_journal.h)
// adds to the daemon's hot path, in process. One iteration is the records
// an Allocate + Release of a fresh buffer reports (PutBuffer, PutHolds,
// PutHolds 0, EraseBuffer), appended to a journal on tmpfs (/dev/shm, as
// the state directory is on /run), with the rewrites the growth asks for.
// Prints the time per iteration: compare it with a Ping (docs/performance.md:
// the target is Allocate+Release / Ping rising by 5 % at most).
//
//   shmbroker-books-bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdlib>
#include <string>

#include "core/books.h"
#include "server/books_journal.h"

namespace shmbroker {
namespace {

void AllocateRelease(benchmark::State& state) {
  std::string dir = "/dev/shm/shmbroker-books-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp in /dev/shm failed");
    return;
  }
  Books live;
  BookedLease lease;
  lease.id = 1;
  lease.ttl = absl::Seconds(10);
  lease.deadline = absl::Now();
  live.leases[1] = lease;
  auto journal = BooksJournal::Open(dir, live);
  if (!journal.ok()) {
    state.SkipWithError(std::string(journal.status().message()).c_str());
    return;
  }
  BookedBuffer buffer;
  buffer.info.name = "bench-buffer";
  buffer.info.size = 1024;
  buffer.info.charged_bytes = 1024;
  buffer.info.kind = BufferKind::kPooled;
  buffer.info.arena_id = 1;
  buffer.info.owner = {.pid = 1234, .uid = 1000, .gid = 1000};
  buffer.memory = {.device = 5, .inode = 123456};
  uint64_t revision = 0;
  for (auto _ : state) {
    buffer.info.handle = ++revision;
    (*journal)->PutBuffer(buffer, revision);
    (*journal)->PutHolds(1, buffer.info.handle, 1);
    (*journal)->Flush();  // the Allocate's hold of the Registry's lock ends
    (*journal)->PutHolds(1, buffer.info.handle, 0);
    (*journal)->EraseBuffer(buffer.info.handle, revision);
    (*journal)->Flush();  // the Release's
    if ((*journal)->WantsRewrite()) (*journal)->Rewrite(live);
  }
  const BooksJournal::Stats stats = (*journal)->stats();
  state.counters["rewrites"] = static_cast<double>(stats.rewrites);
  state.counters["write_errors"] = static_cast<double>(stats.write_errors);
  journal->reset();
  std::system(("rm -rf '" + dir + "'").c_str());
}
BENCHMARK(AllocateRelease);

}  // namespace
}  // namespace shmbroker

BENCHMARK_MAIN();
