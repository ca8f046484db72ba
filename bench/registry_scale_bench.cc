// shmbroker-registry-bench: what the Registry's queries cost as its table
// grows (#15, "Scale"), in process, without RPCs. One root connection
// holds N pooled 64-byte buffers (N = 1k, 100k, 1M); then, per N:
//   Stats          Registry::Stats, which every Status call, health check
//                  and scrape runs under the registry's lock
//   PoolStats      PooledAllocator::Stats, which every Status call and
//                  scrape runs under the pool's lock
//   ListPage       one List page of 1000 from the middle of the table, as
//                  root (who may see everything)
//   ListPageOther  the same page asked for by another uid who owns 10
//                  buffers and may see none of root's: what a tenant pays
//                  to list its own among everyone's
//   Tenants        Registry::Tenants, the per-uid usage every scrape and
//                  Status call reads
//   ResidentBytes  Registry::ResidentBytes, which every scrape reads: a
//                  walk of the table, in steps of kResidentBytesStep
//                  buffers per hold of the lock
// Flat from 1k to 1M means the cost follows the page, not the table. Run
// with interleaved repetitions on a shared machine:
//
//   shmbroker-registry-bench --benchmark_repetitions=3
//       --benchmark_enable_random_interleaving=true
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>

#include "core/clock.h"
#include "core/registry.h"

namespace shmbroker {
namespace {

constexpr Identity kRoot{.pid = 1, .uid = 0, .gid = 0};
constexpr Identity kTenant{.pid = 2, .uid = 1000, .gid = 1000};
constexpr size_t kPage = 1000;

// A registry holding `n` of root's buffers and 10 of the tenant's, built
// once per size and kept for the whole run.
struct Table {
  std::unique_ptr<Registry> registry;
  ConnectionId tenant = 0;
  Handle middle = 0;
};

Table& TableOf(int64_t n) {
  static std::map<int64_t, Table> tables;
  Table& table = tables[n];
  if (table.registry != nullptr) return table;
  RegistryOptions options;
  options.capacity_bytes = uint64_t{4} << 30;
  options.max_buffers = 2'000'000;
  options.max_connections_per_uid = 4;
  options.leases.max_holds_per_lease = 2'000'000;
  options.shm_prefix = "/shmbroker-registry-bench";
  table.registry = std::make_unique<Registry>(options, RealClock());
  PooledAllocatorOptions pooling;
  if (!table.registry->EnablePooling(pooling).ok()) std::abort();
  ConnectionId root = *table.registry->OpenConnection(kRoot);
  table.tenant = *table.registry->OpenConnection(kTenant);
  AllocateSpec spec;
  spec.size = 64;
  spec.kind = BufferKind::kPooled;
  for (int64_t i = 0; i < n; ++i) {
    absl::StatusOr<Grant> grant = table.registry->Allocate(root, spec);
    if (!grant.ok()) {
      std::fprintf(stderr, "allocate %lld: %s\n", static_cast<long long>(i),
                   grant.status().ToString().c_str());
      std::abort();
    }
    if (i == n / 2) table.middle = grant->buffer.handle;
  }
  for (int i = 0; i < 10; ++i) {
    if (!table.registry->Allocate(table.tenant, spec).ok()) std::abort();
  }
  return table;
}

void BM_Stats(benchmark::State& state) {
  Table& table = TableOf(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.registry->Stats());
  }
}

void BM_PoolStats(benchmark::State& state) {
  Table& table = TableOf(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.registry->pool()->Stats());
  }
}

void BM_ListPage(benchmark::State& state) {
  Table& table = TableOf(state.range(0));
  bool more = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        table.registry->List(kRoot, table.middle, kPage, &more));
  }
}

void BM_ListPageOther(benchmark::State& state) {
  Table& table = TableOf(state.range(0));
  bool more = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        table.registry->List(kTenant, table.middle, kPage, &more));
  }
}

void BM_Tenants(benchmark::State& state) {
  Table& table = TableOf(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.registry->Tenants());
  }
}

// The whole walk; it holds the lock for kResidentBytesStep buffers at a
// time, so the longest hold is about this over the steps (a counter).
void BM_ResidentBytes(benchmark::State& state) {
  Table& table = TableOf(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.registry->ResidentBytes());
  }
  state.counters["steps"] =
      static_cast<double>((state.range(0) + Registry::kResidentBytesStep) /
                          Registry::kResidentBytesStep);
}

void Sizes(benchmark::internal::Benchmark* b) {
  b->Arg(1'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_Stats)->Apply(Sizes);
BENCHMARK(BM_PoolStats)->Apply(Sizes);
BENCHMARK(BM_ListPage)->Apply(Sizes);
BENCHMARK(BM_ListPageOther)->Apply(Sizes);
BENCHMARK(BM_Tenants)->Apply(Sizes);
BENCHMARK(BM_ResidentBytes)->Apply(Sizes);

}  // namespace
}  // namespace shmbroker

BENCHMARK_MAIN();
