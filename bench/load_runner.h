// LoadRunner: the threads and phases of shmbroker-bench.
//
// Each thread has its own Client (its own connection, as N worker processes
// would have) and runs one operation in a loop. The modes run in turn, round
// after round, all threads on the same mode at once, so that Ping (the
// transport floor) and the allocation modes see the same background noise.
#ifndef SHMBROKER_BENCH_LOAD_RUNNER_H_
#define SHMBROKER_BENCH_LOAD_RUNNER_H_

#include <sys/types.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/handoff_peer.h"
#include "bench/report.h"
#include "shmbroker/client.h"

namespace shmbroker::bench {

// The alloc modes ask for a dedicated buffer; the pooled_ ones for a pooled
// buffer of the same size; handoff leaves the kind to the daemon, as
// Allocate does by default (docs/performance.md).
enum class Mode {
  kPing,
  kAllocRelease,
  kAllocReleaseRpc,
  kAllocTouchRelease,
  kAllocFillRelease,
  kPooledAllocRelease,
  kPooledAllocTouchRelease,
  kPooledAllocFillRelease,
  kHandoff,           // bench/handoff_peer.h, of the kind the daemon picks
  kPooledHandoff,     // the same with a pooled buffer
  kDedicatedHandoff,  // and with a dedicated one
  // kHandoff with memory asked for uninitialized, as a producer that writes
  // every byte should (and shmbroker.torch.collate does): no zeroing first.
  kUninitHandoff,
};

const char* ModeName(Mode mode);
// Parses mode names (duplicates are dropped, the order is kept).
absl::StatusOr<std::vector<Mode>> ParseModes(
    const std::vector<std::string>& names);

// Time spent in the recorded phases of one mode: wall time (for
// throughput) and CPU time of this process (all its threads, gRPC's
// included) and of the daemon, when its pid is known. On a 2-vCPU machine
// latency is mostly CPU, so CPU per operation says where the time goes.
struct ModeTotals {
  double wall_seconds = 0;
  double bench_cpu_seconds = 0;
  double daemon_cpu_seconds = 0;
};

// What one thread saw; merged after the run.
struct ThreadResult {
  // Latencies in ns of successful operations, [mode index][round].
  std::vector<std::vector<std::vector<int64_t>>> samples;
  uint64_t errors = 0;
  std::string first_error;
};

class LoadRunner {
 public:
  // A dead daemon makes every call fail at once; the run stops after this
  // many failures in a row instead of spinning on a shared machine.
  static constexpr int kMaxConsecutiveErrors = 1000;

  // `daemon_pid`: the daemon's, to measure its CPU time; 0 if not known.
  LoadRunner(std::vector<std::unique_ptr<client::Client>> clients,
             std::vector<Mode> modes, int rounds,
             const client::AllocateOptions& options, pid_t daemon_pid);

  // Starts one handoff consumer per thread (`self` is this binary), if a
  // handoff mode is to run. Call before Run.
  absl::Status StartHandoffPeers(const std::string& self);

  // Runs every mode for warmup / modes (unrecorded), then `rounds` rounds of
  // every mode for per_mode / rounds each.
  void Run(absl::Duration warmup, absl::Duration per_mode);

  // Makes the daemon apply the one-way releases still queued on each
  // connection (it does so before that client's next call), then returns
  // what it holds while every worker connection is still open.
  absl::StatusOr<DaemonCounts> Settle();
  // Closes every worker connection (the daemon then drops any holds left).
  // Stops the handoff consumers too.
  void Disconnect() {
    peers_.clear();
    clients_.clear();
  }

  const std::vector<ThreadResult>& results() const { return results_; }
  // Indexed like the modes.
  const std::vector<ModeTotals>& totals() const { return totals_; }
  bool aborted() const { return abort_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Phase {
    size_t mode_index = 0;  // into modes_
    int round = -1;         // -1: warmup, not recorded
    Clock::time_point end;
  };

  void Work(size_t thread_index);

  std::vector<std::unique_ptr<client::Client>> clients_;
  std::vector<std::unique_ptr<HandoffPeer>> peers_;  // one per thread, or none
  const std::vector<Mode> modes_;
  const int rounds_;
  const client::AllocateOptions dedicated_;  // the options, kind dedicated
  const client::AllocateOptions pooled_;     // the options, kind pooled
  const client::AllocateOptions any_kind_;   // the options, kind default
  const client::AllocateOptions uninit_;     // any_kind_, uninitialized
  // The main thread and every worker meet here at the start and the end of
  // each phase; the barrier also publishes phase_ and done_.
  std::barrier<> sync_;
  Phase phase_;
  bool done_ = false;
  std::atomic<bool> abort_{false};
  std::vector<ThreadResult> results_;
  const pid_t daemon_pid_;
  std::vector<ModeTotals> totals_;
};

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_LOAD_RUNNER_H_
