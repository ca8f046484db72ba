// Other clients' calls while a big holder is reclaimed (#15, "Expiry and
// reclaim bounded by work"), in process, without RPCs: part of
// shmbroker-registry-bench. One connection holds N pooled 64-byte buffers,
// under one granted lease (Expiry: the lease expires, as the daemon's
// sweeper drives it) or under its default lease (Close: the client hangs up
// or dies). A second connection allocates and releases a pooled buffer back
// to back on another thread and times each Allocate: first while nothing
// else happens (idle), then while the N buffers are let go of (during).
// Arguments: N, then the reclaim batch (LeaseOptions::reclaim_batch, the
// daemon's --reclaim_batch): 16 (the default), 64 and 256 against 0, meaning
// all N in one step, as before the steps existed. Counters, in microseconds:
// p50/p99/max of idle and during, and p99_ratio = p99 during / p99 idle.
// The call that waits out one step is what p99 and max show.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "bench/latency_stats.h"
#include "core/clock.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

constexpr Identity kHolder{.pid = 1, .uid = 1000, .gid = 1000};
constexpr Identity kOther{.pid = 2, .uid = 2000, .gid = 2000};
constexpr size_t kIdleCalls = 20'000;

// The other client: Allocate (timed) then Release, until told to stop;
// keeps the latencies of the calls started while recording.
class Prober {
 public:
  Prober(Registry* registry, ConnectionId client)
      : registry_(registry), client_(client) {}

  // Times `calls` calls on this thread.
  std::vector<int64_t> Idle(size_t calls) {
    std::vector<int64_t> out;
    out.reserve(calls);
    for (size_t i = 0; i < calls; ++i) out.push_back(OneCall());
    return out;
  }
  // Starts calling on a thread of its own; returns once it has made a call.
  void Start() {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        // Decided when the call starts: the call that waits out the whole
        // reclaim ends after recording stopped.
        const bool record = recording_.load();
        const int64_t ns = OneCall();
        calls_.fetch_add(1);
        if (record) during_.push_back(ns);
      }
    });
    while (calls_.load() == 0) std::this_thread::yield();
  }
  void Record(bool on) { recording_.store(on); }
  std::vector<int64_t> Stop() {
    stop_.store(true);
    thread_.join();
    return std::move(during_);
  }

 private:
  int64_t OneCall() {
    AllocateSpec spec;
    spec.size = 64;
    spec.kind = BufferKind::kPooled;
    const absl::Time start = absl::Now();
    absl::StatusOr<Grant> grant = registry_->Allocate(client_, spec);
    const int64_t ns = absl::ToInt64Nanoseconds(absl::Now() - start);
    if (!grant.ok()) std::abort();
    if (!registry_->Release(client_, grant->buffer.handle).ok()) std::abort();
    return ns;
  }

  Registry* const registry_;
  const ConnectionId client_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> recording_{false};
  std::atomic<uint64_t> calls_{0};
  std::vector<int64_t> during_;  // the prober thread's alone until Stop
};

enum class End { kExpiry, kClose };

void RunReclaim(benchmark::State& state, End end) {
  const int64_t n = state.range(0);
  const uint32_t batch =
      state.range(1) == 0 ? UINT32_MAX : static_cast<uint32_t>(state.range(1));
  bench::LatencySummary idle;
  bench::LatencySummary during;
  for (auto _ : state) {
    state.PauseTiming();
    ManualClock clock(absl::FromUnixSeconds(1700000000));
    RegistryOptions options;
    options.capacity_bytes = uint64_t{4} << 30;
    options.max_buffers = 2'000'000;
    options.leases.max_holds_per_lease = 2'000'000;
    options.leases.reclaim_batch = batch;
    options.shm_prefix = "/shmbroker-registry-bench";
    Registry registry(options, &clock);
    if (!registry.EnablePooling(PooledAllocatorOptions{}).ok()) std::abort();
    const ConnectionId holder = *registry.OpenConnection(kHolder);
    LeaseId lease = 0;
    if (end == End::kExpiry) {
      lease = registry.GrantLease(holder, absl::Seconds(1), false)->id;
    }
    AllocateSpec spec;
    spec.size = 64;
    spec.kind = BufferKind::kPooled;
    spec.lease = lease;
    for (int64_t i = 0; i < n; ++i) {
      absl::StatusOr<Grant> grant = registry.Allocate(holder, spec);
      if (!grant.ok()) {
        std::fprintf(stderr, "allocate %lld: %s\n", static_cast<long long>(i),
                     grant.status().ToString().c_str());
        std::abort();
      }
    }
    Prober prober(&registry, *registry.OpenConnection(kOther));
    std::vector<int64_t> idle_ns = prober.Idle(kIdleCalls);
    prober.Start();
    prober.Record(true);
    state.ResumeTiming();
    if (end == End::kExpiry) {
      // Past the granted lease's deadline, not the default leases' (10 s):
      // then, as the daemon's sweeper does, expire what is due in batches
      // of leases (one lease here).
      clock.Advance(absl::Seconds(2));
      while (registry.ExpireLeases(256).more_due) {
      }
    } else {
      registry.CloseConnection(holder);
    }
    state.PauseTiming();
    prober.Record(false);
    std::vector<int64_t> during_ns = prober.Stop();
    if (registry.Stats().buffers != 0) std::abort();
    idle = bench::Summarize(&idle_ns);
    during = bench::Summarize(&during_ns);
    state.ResumeTiming();
  }
  state.counters["idle_p50_us"] = idle.p50_us;
  state.counters["idle_p99_us"] = idle.p99_us;
  state.counters["during_calls"] = static_cast<double>(during.count);
  state.counters["during_p50_us"] = during.p50_us;
  state.counters["during_p99_us"] = during.p99_us;
  state.counters["during_max_us"] = during.max_us;
  state.counters["p99_ratio"] =
      idle.p99_us > 0 ? during.p99_us / idle.p99_us : 0;
}

void BM_CallsDuringExpiry(benchmark::State& state) {
  RunReclaim(state, End::kExpiry);
}
void BM_CallsDuringClose(benchmark::State& state) {
  RunReclaim(state, End::kClose);
}

void Cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"buffers", "batch"})
      ->Args({100'000, 256})
      ->Args({100'000, 64})
      ->Args({100'000, 16})
      ->Args({100'000, 0})
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_CallsDuringExpiry)->Apply(Cases);
BENCHMARK(BM_CallsDuringClose)->Apply(Cases);

}  // namespace
}  // namespace shmbroker
