#include "bench/reclaim_neighbours.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/child_process.h"
#include "shmbroker/client.h"

namespace shmbroker::bench {
namespace {

constexpr uint64_t kBufferBytes = 64;
// The expiring lease's TTL: long enough that the probe runs before it ends.
constexpr absl::Duration kDetachedTtl = absl::Seconds(1);
constexpr absl::Duration kIdlePhase = absl::Seconds(1);
constexpr absl::Duration kGiveUp = absl::Seconds(60);

struct Sample {
  absl::Time start;
  absl::Time end;
  int call = 0;          // index into kNeighbourCalls
  int64_t buffers = -1;  // what a Status reply said
};

client::AllocateOptions PooledOptions(uint64_t lease) {
  client::AllocateOptions o;
  o.size = kBufferBytes;
  o.kind = client::Kind::kPooled;
  o.lease_id = lease;
  return o;
}

// Calls in turn until `until`, or until a Status reply shows at most
// `stop_at_buffers` buffers (-1: never).
absl::StatusOr<std::vector<Sample>> Probe(client::Client& c, absl::Time until,
                                          int64_t stop_at_buffers) {
  std::vector<Sample> samples;
  samples.reserve(1 << 16);
  const client::AllocateOptions pooled = PooledOptions(0);
  for (int i = 0;; ++i) {
    Sample s;
    s.call = i % kNeighbourCallCount;
    s.start = absl::Now();
    if (s.start >= until) break;
    absl::Status status;
    if (s.call == 0) {
      status = c.Ping();
    } else if (s.call == 1) {
      absl::StatusOr<client::DaemonStatus> st = c.Status();
      status = st.status();
      if (st.ok()) s.buffers = static_cast<int64_t>(st->buffers);
    } else {
      absl::StatusOr<client::Buffer> b = c.Allocate(pooled);
      status = b.status();  // the Buffer goes here: a one-way Release
    }
    s.end = absl::Now();
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("the probe's ", kNeighbourCalls[s.call],
                                       ": ", status.message()));
    }
    samples.push_back(s);
    if (s.buffers >= 0 && s.buffers <= stop_at_buffers) break;
  }
  return samples;
}

void AddSamples(const std::vector<Sample>& samples, absl::Time from,
                absl::Time to, std::vector<int64_t> (&into)[3]) {
  for (const Sample& s : samples) {
    if (s.end > from && s.start < to) {
      into[s.call].push_back(absl::ToInt64Nanoseconds(s.end - s.start));
    }
  }
}

// The window of a reclaim phase: from the last Status that saw all `all`
// buffers to the first that saw at most `gone`.
absl::StatusOr<std::pair<absl::Time, absl::Time>> Window(
    const std::vector<Sample>& samples, int64_t all, int64_t gone) {
  absl::Time from = samples.empty() ? absl::Now() : samples.front().start;
  absl::Time to = absl::InfinitePast();
  for (const Sample& s : samples) {
    if (s.buffers >= all) from = s.end;
    if (s.buffers >= 0 && s.buffers <= gone) {
      to = s.end;
      break;
    }
  }
  if (to == absl::InfinitePast()) {
    return absl::DeadlineExceededError(
        absl::StrCat("the holder's buffers were not reclaimed within ",
                     absl::FormatDuration(kGiveUp)));
  }
  return std::make_pair(from, to);
}

struct Samples {
  std::vector<int64_t> idle[3], expiry[3], death[3];
};

// "status 2.8 ms at +41.0 ms (window 95.2 ms)": each call in the window
// slower than `slow`, where it started in the window.
void ListSlowCalls(const std::vector<Sample>& samples, absl::Time from,
                   absl::Time to, absl::Duration slow, int trial,
                   std::vector<std::string>* into) {
  if (slow <= absl::ZeroDuration()) return;
  for (const Sample& s : samples) {
    if (s.end <= from || s.start >= to || s.end - s.start <= slow) continue;
    into->push_back(absl::StrFormat(
        "trial %d: %s %.2f ms at %+.1f ms (window %.1f ms)", trial,
        kNeighbourCalls[s.call], absl::ToDoubleMilliseconds(s.end - s.start),
        absl::ToDoubleMilliseconds(s.start - from),
        absl::ToDoubleMilliseconds(to - from)));
  }
}

}  // namespace

std::vector<std::string> DaemonFlagsForNeighbours(uint64_t holds) {
  const std::string room = absl::StrCat(holds + 10000);
  return {"--lease_min_ttl=100ms",          "--max_buffers=" + room,
          "--max_buffers_per_uid=" + room,  "--max_holds_per_lease=" + room,
          "--max_calls_per_second=1000000", "--max_frames_per_second=1000000"};
}

int RunReclaimHolder(const std::string& socket, uint64_t count, bool detached) {
  client::ClientOptions options;
  options.socket_path = socket;
  absl::StatusOr<std::unique_ptr<client::Client>> c =
      client::Client::Connect(options);
  if (!c.ok()) {
    std::fprintf(stderr, "reclaim holder: %s\n", c.status().ToString().c_str());
    return 1;
  }
  uint64_t lease = 0;
  if (detached) {
    absl::StatusOr<client::LeaseInfo> granted =
        (*c)->GrantLease(kDetachedTtl, /*detached=*/true);
    if (!granted.ok()) {
      std::fprintf(stderr, "reclaim holder: %s\n",
                   granted.status().ToString().c_str());
      return 1;
    }
    lease = granted->id;
  }
  std::vector<client::Buffer> held;
  held.reserve(count);
  const client::AllocateOptions pooled = PooledOptions(lease);
  for (uint64_t i = 0; i < count; ++i) {
    absl::StatusOr<client::Buffer> b = (*c)->Allocate(pooled);
    if (!b.ok()) {
      std::fprintf(stderr, "reclaim holder: buffer %lu: %s\n", i,
                   b.status().ToString().c_str());
      return 1;
    }
    held.push_back(std::move(*b));
  }
  std::printf("holding %lu\n", count);
  std::fflush(stdout);
  // Expiry: leave without releasing anything (no destructors run); the
  // detached lease outlives the connection and runs out with every hold.
  if (detached) ::_exit(0);
  for (;;) ::pause();
}

absl::StatusOr<NeighbourReport> RunReclaimNeighbours(const std::string& self,
                                                     const std::string& socket,
                                                     int trials, uint64_t holds,
                                                     absl::Duration slow) {
  client::ClientOptions options;
  options.socket_path = socket;
  absl::StatusOr<std::unique_ptr<client::Client>> probe =
      client::Client::Connect(options);
  if (!probe.ok()) return probe.status();
  absl::StatusOr<client::DaemonStatus> start = (*probe)->Status();
  if (!start.ok()) return start.status();
  const int64_t base = static_cast<int64_t>(start->buffers);
  const int64_t all = base + static_cast<int64_t>(holds);
  const int64_t gone = base + 1;  // the probe's own pooled buffer at most

  NeighbourReport report;
  report.trials = trials;
  report.holds = holds;
  report.idle.name = "idle";
  report.expiry.name = "expiry";
  report.death.name = "death";
  Samples samples;
  for (int trial = 0; trial < trials; ++trial) {
    for (const bool detached : {true, false}) {
      absl::StatusOr<std::vector<Sample>> idle =
          Probe(**probe, absl::Now() + kIdlePhase, -1);
      if (!idle.ok()) return idle.status();
      AddSamples(*idle, absl::InfinitePast(), absl::InfiniteFuture(),
                 samples.idle);

      std::vector<std::string> args = {
          self, "--socket=" + socket, absl::StrCat("--reclaim_holder=", holds)};
      if (detached) args.push_back("--reclaim_holder_detached");
      absl::StatusOr<Child> holder = Spawn(args);
      if (!holder.ok()) return holder.status();
      if (absl::Status s = WaitForFirstOutput(*holder); !s.ok()) {
        Reap(holder->pid);
        return s;
      }
      absl::StatusOr<std::vector<Sample>> during;
      std::thread prober(
          [&] { during = Probe(**probe, absl::Now() + kGiveUp, gone); });
      if (!detached) {
        // Let the probe see every buffer held first.
        absl::SleepFor(absl::Milliseconds(100));
        ::kill(holder->pid, SIGKILL);
      }
      prober.join();
      Reap(holder->pid);
      if (!during.ok()) return during.status();
      absl::StatusOr<std::pair<absl::Time, absl::Time>> window =
          Window(*during, all, gone);
      if (!window.ok()) return window.status();
      NeighbourPhase& phase = detached ? report.expiry : report.death;
      phase.window_ms.push_back(
          absl::ToDoubleMilliseconds(window->second - window->first));
      AddSamples(*during, window->first, window->second,
                 detached ? samples.expiry : samples.death);
      ListSlowCalls(*during, window->first, window->second, slow, trial,
                    &phase.slow_calls);
    }
  }
  for (int call = 0; call < kNeighbourCallCount; ++call) {
    report.idle.calls[call] = Summarize(&samples.idle[call]);
    report.expiry.calls[call] = Summarize(&samples.expiry[call]);
    report.death.calls[call] = Summarize(&samples.death[call]);
  }
  return report;
}

std::string FormatNeighbourText(const NeighbourReport& r) {
  const LatencySummary& ping = r.idle.calls[0];
  std::string out = absl::StrFormat(
      "other clients during reclaim, %d trials of %lu pooled buffers under "
      "one lease (expiry: a detached lease runs out; death: its holder is "
      "SIGKILLed):\n"
      "  %-7s %-21s %8s %9s %9s %10s %12s %12s\n",
      r.trials, r.holds, "phase", "call", "calls", "p50 us", "p99 us", "max us",
      "p50/ping p50", "p99/ping p99");
  for (const NeighbourPhase* phase : {&r.idle, &r.expiry, &r.death}) {
    for (int call = 0; call < kNeighbourCallCount; ++call) {
      const LatencySummary& l = phase->calls[call];
      absl::StrAppendFormat(
          &out, "  %-7s %-21s %8lu %9.1f %9.1f %10.1f %12.2f %12.2f\n",
          phase->name, kNeighbourCalls[call], l.count, l.p50_us, l.p99_us,
          l.max_us, ping.p50_us > 0 ? l.p50_us / ping.p50_us : 0,
          ping.p99_us > 0 ? l.p99_us / ping.p99_us : 0);
    }
  }
  for (const NeighbourPhase* phase : {&r.expiry, &r.death}) {
    absl::StrAppendFormat(&out, "  %s windows (ms):", phase->name);
    for (double ms : phase->window_ms) absl::StrAppendFormat(&out, " %.1f", ms);
    out += "\n";
    for (const std::string& call : phase->slow_calls) {
      absl::StrAppend(&out, "    slow, ", phase->name, ": ", call, "\n");
    }
  }
  out +=
      "  (idle: the probe alone, 1 s before each reclaim phase; ratios to "
      "the idle Ping)\n";
  return out;
}

}  // namespace shmbroker::bench
