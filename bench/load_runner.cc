#include "bench/load_runner.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace shmbroker::bench {
namespace {

using client::Client;

constexpr struct {
  Mode mode;
  const char* name;
} kModes[] = {
    {Mode::kPing, "ping"},
    {Mode::kAllocRelease, "alloc_release"},
    {Mode::kAllocReleaseRpc, "alloc_release_rpc"},
    {Mode::kAllocTouchRelease, "alloc_touch_release"},
    {Mode::kAllocFillRelease, "alloc_fill_release"},
    {Mode::kPooledAllocRelease, "pooled_alloc_release"},
    {Mode::kPooledAllocTouchRelease, "pooled_alloc_touch_release"},
    {Mode::kPooledAllocFillRelease, "pooled_alloc_fill_release"},
    {Mode::kHandoff, "handoff"},
    {Mode::kPooledHandoff, "pooled_handoff"},
    {Mode::kDedicatedHandoff, "dedicated_handoff"},
    {Mode::kUninitHandoff, "uninit_handoff"},
};

bool IsPooled(Mode mode) {
  return mode == Mode::kPooledAllocRelease ||
         mode == Mode::kPooledAllocTouchRelease ||
         mode == Mode::kPooledAllocFillRelease || mode == Mode::kPooledHandoff;
}

bool IsHandoff(Mode mode) {
  return mode == Mode::kHandoff || mode == Mode::kPooledHandoff ||
         mode == Mode::kDedicatedHandoff || mode == Mode::kUninitHandoff;
}

client::AllocateOptions Uninitialized(client::AllocateOptions options) {
  options.kind = client::Kind::kDefault;
  options.uninitialized = true;
  return options;
}

client::AllocateOptions OfKind(client::AllocateOptions options,
                               client::Kind kind) {
  options.kind = kind;
  return options;
}

constexpr size_t kTouchStride = 4096;

absl::Status RunOnce(Mode mode, Client& client,
                     const client::AllocateOptions& options,
                     HandoffPeer* peer) {
  switch (mode) {
    case Mode::kHandoff:
    case Mode::kPooledHandoff:
    case Mode::kDedicatedHandoff:
    case Mode::kUninitHandoff:
      return peer->Handoff(client, options);
    case Mode::kPing:
      return client.Ping();
    case Mode::kAllocRelease:
    case Mode::kPooledAllocRelease: {
      // The Buffer dies at the end of this scope: unmap, close, and a one-way
      // release message, as in normal use of the library.
      absl::StatusOr<client::Buffer> buffer = client.Allocate(options);
      return buffer.status();
    }
    case Mode::kAllocReleaseRpc: {
      absl::StatusOr<client::Buffer> buffer = client.Allocate(options);
      if (!buffer.ok()) return buffer.status();
      return buffer->Release();
    }
    case Mode::kAllocTouchRelease:
    case Mode::kPooledAllocTouchRelease: {
      absl::StatusOr<client::Buffer> buffer = client.Allocate(options);
      if (!buffer.ok()) return buffer.status();
      // One write per page faults every page in; the stores cannot be
      // dropped because munmap (in another library) may observe them.
      uint8_t* data = buffer->data();
      for (size_t i = 0; i < buffer->size(); i += kTouchStride) data[i] = 1;
      return absl::OkStatus();
    }
    case Mode::kAllocFillRelease:
    case Mode::kPooledAllocFillRelease: {
      // What a producer does: write every byte.
      absl::StatusOr<client::Buffer> buffer = client.Allocate(options);
      if (!buffer.ok()) return buffer.status();
      std::memset(buffer->data(), 0x5a, buffer->size());
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown mode");
}

// User + system CPU time of all threads of a process, from /proc/PID/stat in
// clock ticks (10 ms: fine over phases of seconds). Zero for pid <= 0 (not
// known) or a process that is gone.
double ProcessCpuSeconds(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces), from field 3.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  return static_cast<double>(utime + stime) / ::sysconf(_SC_CLK_TCK);
}

}  // namespace

const char* ModeName(Mode mode) {
  for (const auto& known : kModes) {
    if (known.mode == mode) return known.name;
  }
  return "unknown";
}

absl::StatusOr<std::vector<Mode>> ParseModes(
    const std::vector<std::string>& names) {
  std::vector<Mode> modes;
  for (const std::string& name : names) {
    const auto* known =
        std::find_if(std::begin(kModes), std::end(kModes),
                     [&](const auto& k) { return name == k.name; });
    if (known == std::end(kModes)) {
      std::vector<std::string> all;
      for (const auto& k : kModes) all.push_back(k.name);
      return absl::InvalidArgumentError(
          absl::StrFormat("--modes: unknown mode \"%s\" (use %s)", name,
                          absl::StrJoin(all, ", ")));
    }
    if (std::find(modes.begin(), modes.end(), known->mode) == modes.end()) {
      modes.push_back(known->mode);
    }
  }
  if (modes.empty()) return absl::InvalidArgumentError("--modes is empty");
  return modes;
}

LoadRunner::LoadRunner(std::vector<std::unique_ptr<Client>> clients,
                       std::vector<Mode> modes, int rounds,
                       const client::AllocateOptions& options, pid_t daemon_pid)
    : clients_(std::move(clients)),
      modes_(std::move(modes)),
      rounds_(rounds),
      dedicated_(OfKind(options, client::Kind::kDedicated)),
      pooled_(OfKind(options, client::Kind::kPooled)),
      any_kind_(OfKind(options, client::Kind::kDefault)),
      uninit_(Uninitialized(options)),
      sync_(static_cast<std::ptrdiff_t>(clients_.size()) + 1),
      results_(clients_.size()),
      daemon_pid_(daemon_pid),
      totals_(modes_.size()) {
  for (ThreadResult& result : results_) {
    result.samples.assign(modes_.size(),
                          std::vector<std::vector<int64_t>>(rounds_));
  }
}

absl::Status LoadRunner::StartHandoffPeers(const std::string& self) {
  if (std::none_of(modes_.begin(), modes_.end(), IsHandoff)) {
    return absl::OkStatus();
  }
  for (size_t t = 0; t < clients_.size(); ++t) {
    absl::StatusOr<std::unique_ptr<HandoffPeer>> peer = HandoffPeer::Start(
        self, clients_[t]->socket_path(),
        absl::StrFormat("bench-handoff-%d-%d", ::getpid(), t));
    if (!peer.ok()) return peer.status();
    peers_.push_back(std::move(*peer));
  }
  return absl::OkStatus();
}

void LoadRunner::Run(absl::Duration warmup, absl::Duration per_mode) {
  std::vector<std::thread> threads;
  for (size_t t = 0; t < clients_.size(); ++t) {
    threads.emplace_back([this, t] { Work(t); });
  }
  const auto warmup_each = absl::ToChronoNanoseconds(warmup / modes_.size());
  const auto phase_length = absl::ToChronoNanoseconds(per_mode / rounds_);
  const pid_t self = ::getpid();
  for (int round = -1; round < rounds_ && !abort_.load(); ++round) {
    for (size_t m = 0; m < modes_.size() && !abort_.load(); ++m) {
      if (round < 0 && warmup_each <= Clock::duration::zero()) continue;
      const double bench_cpu = ProcessCpuSeconds(self);
      const double daemon_cpu = ProcessCpuSeconds(daemon_pid_);
      const Clock::time_point start = Clock::now();
      phase_ = {m, round, start + (round < 0 ? warmup_each : phase_length)};
      sync_.arrive_and_wait();  // go
      sync_.arrive_and_wait();  // every thread is past the end
      if (round < 0) continue;
      totals_[m].wall_seconds +=
          std::chrono::duration<double>(Clock::now() - start).count();
      totals_[m].bench_cpu_seconds += ProcessCpuSeconds(self) - bench_cpu;
      totals_[m].daemon_cpu_seconds +=
          ProcessCpuSeconds(daemon_pid_) - daemon_cpu;
    }
  }
  done_ = true;
  sync_.arrive_and_wait();
  for (std::thread& thread : threads) thread.join();
}

void LoadRunner::Work(size_t thread_index) {
  Client& client = *clients_[thread_index];
  ThreadResult& result = results_[thread_index];
  int consecutive_errors = 0;
  for (;;) {
    sync_.arrive_and_wait();
    if (done_) return;
    const Phase phase = phase_;
    const Mode mode = modes_[phase.mode_index];
    std::vector<int64_t>* samples =
        phase.round >= 0 ? &result.samples[phase.mode_index][phase.round]
                         : nullptr;
    // The clock is read around each call only, so that bookkeeping (e.g. a
    // vector growing) is never charged to an operation.
    for (Clock::time_point end = Clock::now();
         end < phase.end && !abort_.load(std::memory_order_relaxed);) {
      const Clock::time_point start = Clock::now();
      absl::Status status =
          RunOnce(mode, client,
                  mode == Mode::kHandoff         ? any_kind_
                  : mode == Mode::kUninitHandoff ? uninit_
                  : IsPooled(mode)               ? pooled_
                                                 : dedicated_,
                  peers_.empty() ? nullptr : peers_[thread_index].get());
      end = Clock::now();
      if (status.ok()) {
        consecutive_errors = 0;
        if (samples != nullptr) samples->push_back((end - start).count());
        continue;
      }
      if (result.errors++ == 0) {
        result.first_error =
            absl::StrFormat("%s: %s", ModeName(mode), status.ToString());
      }
      if (++consecutive_errors >= kMaxConsecutiveErrors) abort_ = true;
    }
    sync_.arrive_and_wait();
  }
}

absl::StatusOr<DaemonCounts> LoadRunner::Settle() {
  absl::StatusOr<client::DaemonStatus> status;
  for (auto& client : clients_) {
    status = client->Status();
    if (!status.ok()) return status.status();
  }
  return DaemonCounts{status->buffers, status->holds, status->allocated_bytes};
}

}  // namespace shmbroker::bench
