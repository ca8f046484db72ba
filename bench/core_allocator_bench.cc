// shmbroker-core-bench: the pooled allocator (core/pooled_allocator.h) in
// process, against the floor of a dedicated segment of the same size.
//
// Per size (every size class, then page runs):
//   Pooled         Allocate + Free, steady state (the slot or run is reused)
//   PooledZeroedUse  the same asking for zeroed memory, and the client
//                  writing every page (through its arena mapping) before
//                  Free: dirty, resident memory zeroed every time
//   Dedicated      CreateMemoryObject + close: what a dedicated buffer costs
//                  the daemon (memfd_create, fchmod, ftruncate, seals)
//   DedicatedFirstUse  Dedicated + mmap + touch every page + munmap: what a
//                  fresh (zero) dedicated buffer costs daemon and client
// and, to choose PooledAllocatorOptions::zero_punch_min_bytes and
// scavenge_max_pages:
//   ZeroMemset / ZeroPunch  zeroing dirty resident memory of that size;
//                  ZeroPunch includes the client touching the pages again.
//   Punch16MiB     one Scavenge call's worth of punching (4096 pages).
// After the usual table it prints each CPU time as a ratio to Dedicated of
// the same size (docs/performance.md: absolute numbers on shared machines
// say little). Run with interleaved repetitions to tame the noise:
//
//   shmbroker-core-bench --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/arena.h"
#include "core/capacity.h"
#include "core/memory_object.h"
#include "core/pooled_allocator.h"
#include "core/size_classes.h"

namespace shmbroker {
namespace {

constexpr uint64_t kArenaSize = uint64_t{64} << 20;
constexpr TenantId kTenant = 1000;

std::vector<int64_t> Sizes() {
  std::vector<int64_t> sizes;
  sizes.reserve(kSizeClasses.size() + 5);
  for (const SizeClass& c : kSizeClasses) sizes.push_back(c.size);
  for (int64_t kib : {64, 256, 1024, 4096, 16384}) sizes.push_back(kib << 10);
  return sizes;
}

void AllSizes(benchmark::internal::Benchmark* b) {
  for (int64_t size : Sizes()) b->Arg(size);
}

// Powers of two among the classes, then the runs: for the benchmarks that
// touch memory, whose cost is per page rather than per class.
void SomeSizes(benchmark::internal::Benchmark* b) {
  for (int64_t size : Sizes()) {
    if ((size & (size - 1)) == 0 && size >= 512) b->Arg(size);
  }
  b->Arg(64);
}

void RunSizes(benchmark::internal::Benchmark* b) {
  for (int64_t kib : {4, 16, 64, 256, 1024, 4096, 16384}) b->Arg(kib << 10);
}

std::unique_ptr<PooledAllocator> MakeAllocator(CapacityBudget* budget) {
  PooledAllocatorOptions options;
  options.arena_size = kArenaSize;
  absl::StatusOr<std::unique_ptr<PooledAllocator>> made =
      PooledAllocator::Create(options, budget);
  return made.ok() ? std::move(*made) : nullptr;
}

// One client mapping per arena, as the client library keeps them.
class ArenaViews {
 public:
  ~ArenaViews() {
    for (const auto& [id, view] : views_) ::munmap(view.first, view.second);
  }
  char* Get(const PooledBlock& block) {
    auto it = views_.find(block.arena_id);
    if (it == views_.end()) {
      const uint64_t size = block.arena_memory->size();
      void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                          block.arena_memory->fd(), 0);
      if (base == MAP_FAILED) return nullptr;
      it = views_.emplace(block.arena_id, std::make_pair(base, size)).first;
    }
    return static_cast<char*>(it->second.first) + block.offset;
  }

 private:
  std::map<uint64_t, std::pair<void*, uint64_t>> views_;
};

// Allocate + Free in a steady state (the same slot or run comes back each
// time). With `use`, the block is asked for zeroed and the client writes a
// byte in each of its pages, so the memory is resident and dirty every time:
// the pooled counterpart of BM_DedicatedFirstUse.
void PooledAllocFree(benchmark::State& state, bool use) {
  const auto size = static_cast<uint64_t>(state.range(0));
  Capacity budget(uint64_t{1} << 30);
  std::unique_ptr<PooledAllocator> allocator = MakeAllocator(&budget);
  ArenaViews views;
  // Some live neighbours, so the arena is not trivially empty.
  std::vector<PooledBlock> neighbours;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<PooledBlock> b = allocator->Allocate(kTenant, size, false);
    if (b.ok()) neighbours.push_back(*b);
  }
  auto round = [&]() -> bool {
    absl::StatusOr<PooledBlock> block =
        allocator->Allocate(kTenant, size, /*zeroed=*/use);
    if (!block.ok()) {
      const std::string message(block.status().message());
      state.SkipWithError(message.c_str());
      return false;
    }
    benchmark::DoNotOptimize(block->offset);
    if (use) {
      volatile char* bytes = views.Get(*block);
      for (uint64_t i = 0; i < size; i += kPageSize) bytes[i] = 1;
      bytes[size - 1] = 1;
    }
    if (!allocator->Free(block->arena_id, block->offset).ok()) {
      state.SkipWithError("free failed");
      return false;
    }
    return true;
  };
  // Two rounds untimed: the first touch of fresh pages by the client, then
  // by the daemon's zeroing (a minor fault per page in each mapping, paid
  // once per arena) are not what a short run should measure.
  if (!round() || !round()) return;
  for (auto _ : state) {
    if (!round()) break;
  }
}

void BM_Pooled(benchmark::State& state) { PooledAllocFree(state, false); }
void BM_PooledZeroedUse(benchmark::State& state) {
  PooledAllocFree(state, true);
}

std::unique_ptr<MemoryObject> CreateDedicated(uint64_t size) {
  MemorySpec spec;
  spec.backing = Backing::kMemfd;
  spec.size = size;
  absl::StatusOr<std::unique_ptr<MemoryObject>> object =
      CreateMemoryObject(spec);
  return object.ok() ? std::move(*object) : nullptr;
}

void BM_Dedicated(benchmark::State& state) {
  const auto size = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    std::unique_ptr<MemoryObject> object = CreateDedicated(size);
    if (object == nullptr) {
      state.SkipWithError("CreateMemoryObject failed");
      break;
    }
    benchmark::DoNotOptimize(object->fd());
  }
}

void BM_DedicatedFirstUse(benchmark::State& state) {
  const auto size = static_cast<uint64_t>(state.range(0));
  for (auto _ : state) {
    std::unique_ptr<MemoryObject> object = CreateDedicated(size);
    void* base = object == nullptr
                     ? MAP_FAILED
                     : ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                              object->fd(), 0);
    if (base == MAP_FAILED) {
      state.SkipWithError("create or mmap failed");
      break;
    }
    auto* bytes = static_cast<volatile char*>(base);
    for (uint64_t i = 0; i < size; i += kPageSize) bytes[i] = 1;
    ::munmap(base, size);
  }
}

// One dirty, resident arena segment for the zeroing benchmarks.
std::shared_ptr<ArenaSegment> DirtySegment(uint64_t size) {
  absl::StatusOr<std::shared_ptr<ArenaSegment>> segment =
      ArenaSegment::Create(size, /*prefault=*/false, "bench");
  if (!segment.ok()) return nullptr;
  std::memset((*segment)->data(), 0x5a, size);
  return *segment;
}

void BM_ZeroMemset(benchmark::State& state) {
  const auto size = static_cast<uint64_t>(state.range(0));
  std::shared_ptr<ArenaSegment> segment = DirtySegment(size);
  for (auto _ : state) {
    segment->Zero(0, size, /*punch_min_bytes=*/UINT64_MAX);
    benchmark::ClobberMemory();
  }
}

void BM_ZeroPunch(benchmark::State& state) {
  const auto size = static_cast<uint64_t>(state.range(0));
  std::shared_ptr<ArenaSegment> segment = DirtySegment(size);
  volatile char* bytes = segment->data();
  for (auto _ : state) {
    segment->Zero(0, size, /*punch_min_bytes=*/0);
    // The client's next touch faults a fresh page in: part of the price.
    for (uint64_t i = 0; i < size; i += kPageSize) bytes[i] = 1;
  }
}

void BM_Punch16MiB(benchmark::State& state) {
  constexpr uint64_t kSize = uint64_t{16} << 20;
  std::shared_ptr<ArenaSegment> segment = DirtySegment(kSize);
  for (auto _ : state) {
    state.PauseTiming();
    std::memset(segment->data(), 0x5a, kSize);  // dirty and resident again
    state.ResumeTiming();
    if (!segment->Punch(0, kSize).ok()) {
      state.SkipWithError("punch failed");
      break;
    }
  }
}

BENCHMARK(BM_Pooled)->Apply(AllSizes);
BENCHMARK(BM_PooledZeroedUse)->Apply(SomeSizes);
BENCHMARK(BM_Dedicated)->Apply(AllSizes);
BENCHMARK(BM_DedicatedFirstUse)->Apply(SomeSizes);
BENCHMARK(BM_ZeroMemset)->Apply(RunSizes);
BENCHMARK(BM_ZeroPunch)->Apply(RunSizes);
BENCHMARK(BM_Punch16MiB)->Unit(benchmark::kMicrosecond);

// The console table, then every time as a ratio to BM_Dedicated's for the
// same size (medians when there are repetitions). CPU time (user + system,
// page faults included), because on a machine shared with compilers the
// real time mostly measures waiting for a core.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const bool aggregate = run.run_type == Run::RT_Aggregate;
      if (aggregate && run.aggregate_name != "median") continue;
      if (!aggregate && run.repetitions > 1) continue;
      const std::string& args = run.run_name.args;
      times_[args][run.run_name.function_name] =
          run.GetAdjustedCPUTime() /
          benchmark::GetTimeUnitMultiplier(run.time_unit);  // seconds
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintRatios() const {
    static const char* const kColumns[] = {"BM_Pooled", "BM_PooledZeroedUse",
                                           "BM_DedicatedFirstUse",
                                           "BM_ZeroMemset", "BM_ZeroPunch"};
    std::printf(
        "\nRatio to BM_Dedicated of the same size (median CPU time, user + "
        "system: steadier than real time on a shared machine)\n");
    std::printf("%10s %12s", "size", "dedicated");
    for (const char* column : kColumns) std::printf(" %14s", column + 3);
    std::printf("\n");
    std::map<int64_t, const std::map<std::string, double>*> by_size;
    for (const auto& [args, times] : times_) {
      if (!args.empty()) by_size[std::stoll(args)] = &times;
    }
    for (const auto& [size, times] : by_size) {
      auto floor = times->find("BM_Dedicated");
      if (floor == times->end()) continue;
      std::printf("%10lld %10.2fus", static_cast<long long>(size),
                  floor->second * 1e6);
      for (const char* column : kColumns) {
        auto it = times->find(column);
        if (it == times->end()) {
          std::printf(" %14s", "-");
        } else {
          std::printf(" %14.3f", it->second / floor->second);
        }
      }
      std::printf("\n");
    }
  }

 private:
  // args ("4096") -> function name -> seconds per iteration
  std::map<std::string, std::map<std::string, double>> times_;
};

}  // namespace
}  // namespace shmbroker

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  shmbroker::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}
