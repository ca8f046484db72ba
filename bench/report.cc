#include "bench/report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/byte_size.h"

namespace shmbroker::bench {
namespace {

const ModeReport* FindPing(const RunReport& report) {
  for (const ModeReport& mode : report.modes) {
    if (mode.name == "ping") return &mode;
  }
  return nullptr;
}

std::optional<double> Ratio(double value, double floor) {
  if (value <= 0 || floor <= 0) return std::nullopt;
  return value / floor;
}

// Per-round p50 ratios: this mode's p50 in round r over ping's p50 in round r,
// i.e. each against the floor measured right next to it.
std::vector<double> RoundRatios(const ModeReport& mode,
                                const ModeReport& ping) {
  std::vector<double> ratios;
  for (size_t r = 0;
       r < mode.round_p50_us.size() && r < ping.round_p50_us.size(); ++r) {
    if (mode.round_p50_us[r] > 0 && ping.round_p50_us[r] > 0) {
      ratios.push_back(mode.round_p50_us[r] / ping.round_p50_us[r]);
    }
  }
  return ratios;
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(std::optional<double> value) {
  return value ? absl::StrFormat("%.4g", *value) : "null";
}

std::string JsonCounts(const std::optional<DaemonCounts>& counts) {
  if (!counts) return "null";
  return absl::StrFormat(
      "{\"buffers\": %d, \"holds\": %d, \"allocated_bytes\": %d}",
      counts->buffers, counts->holds, counts->allocated_bytes);
}

std::string TextCounts(const DaemonCounts& counts) {
  return absl::StrFormat("buffers=%d holds=%d allocated_bytes=%d",
                         counts.buffers, counts.holds, counts.allocated_bytes);
}

}  // namespace

std::string FormatText(const RunReport& report) {
  std::string out = absl::StrFormat(
      "shmbroker-bench: threads=%d size=%s backing=%s duration=%s/mode in %d "
      "rounds, warmup=%s\n",
      report.threads, FormatByteSize(report.size_bytes), report.backing,
      absl::FormatDuration(report.duration), report.rounds,
      absl::FormatDuration(report.warmup));
  absl::StrAppendFormat(&out, "daemon: %s\n\n",
                        report.spawned_daemon.empty()
                            ? absl::StrCat("running at ", report.socket_path)
                            : absl::StrCat("spawned ", report.spawned_daemon));
  absl::StrAppendFormat(&out, "%-26s %8s %7s %8s %8s %8s %8s %8s %10s  %s\n",
                        "mode", "ops", "ops/s", "p50 us", "p99 us", "max us",
                        "p50/ping", "p99/ping", "cpu us/op",
                        "p50/ping by round");
  const ModeReport* ping = FindPing(report);
  for (const ModeReport& mode : report.modes) {
    std::string p50_ratio = "-", p99_ratio = "-", rounds = "-";
    if (ping != nullptr) {
      if (auto r = Ratio(mode.latency.p50_us, ping->latency.p50_us)) {
        p50_ratio = absl::StrFormat("%.2f", *r);
      }
      if (auto r = Ratio(mode.latency.p99_us, ping->latency.p99_us)) {
        p99_ratio = absl::StrFormat("%.2f", *r);
      }
      std::vector<double> ratios = RoundRatios(mode, *ping);
      if (!ratios.empty()) {
        auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
        rounds = absl::StrFormat("%.2f-%.2f", *lo, *hi);
      }
    }
    std::string cpu = "-";
    if (mode.bench_cpu_us_per_op) {
      cpu = absl::StrFormat("%.0f", *mode.bench_cpu_us_per_op);
      if (mode.daemon_cpu_us_per_op) {
        absl::StrAppendFormat(&cpu, "+%.0f", *mode.daemon_cpu_us_per_op);
      }
    }
    absl::StrAppendFormat(
        &out, "%-26s %8d %7.0f %8.1f %8.1f %8.1f %8s %8s %10s  %s\n", mode.name,
        mode.latency.count, mode.ops_per_second, mode.latency.p50_us,
        mode.latency.p99_us, mode.latency.max_us, p50_ratio, p99_ratio, cpu,
        rounds);
  }
  absl::StrAppendFormat(&out,
                        "\ncpu us/op: CPU time of this process (all "
                        "threads)%s per successful operation\n",
                        report.spawned_daemon.empty() ? "" : " + the daemon's");
  absl::StrAppendFormat(&out, "errors: %d%s\n", report.errors,
                        report.errors > 0
                            ? absl::StrCat(" (first: ", report.first_error, ")")
                            : "");
  if (report.after) {
    absl::StrAppendFormat(
        &out, "daemon after run: %s%s\n", TextCounts(*report.after),
        report.before
            ? absl::StrCat(" (before: ", TextCounts(*report.before), ")")
            : "");
  }
  return out;
}

std::string FormatJson(const RunReport& report) {
  const ModeReport* ping = FindPing(report);
  std::vector<std::string> modes;
  for (const ModeReport& mode : report.modes) {
    std::optional<double> p50_ratio, p99_ratio;
    std::vector<double> round_ratios;
    if (ping != nullptr) {
      p50_ratio = Ratio(mode.latency.p50_us, ping->latency.p50_us);
      p99_ratio = Ratio(mode.latency.p99_us, ping->latency.p99_us);
      round_ratios = RoundRatios(mode, *ping);
    }
    auto number = [](std::string* out, double v) {
      absl::StrAppendFormat(out, "%.4g", v);
    };
    modes.push_back(absl::StrFormat(
        "    {\"mode\": %s, \"ops\": %d, \"ops_per_second\": %.1f, "
        "\"mean_us\": %.2f, \"p50_us\": %.2f, \"p99_us\": %.2f, "
        "\"max_us\": %.2f, \"bench_cpu_us_per_op\": %s, "
        "\"daemon_cpu_us_per_op\": %s, \"p50_ratio_to_ping\": %s, "
        "\"p99_ratio_to_ping\": %s, \"round_p50_us\": [%s], "
        "\"round_p50_ratio_to_ping\": [%s]}",
        JsonString(mode.name), mode.latency.count, mode.ops_per_second,
        mode.latency.mean_us, mode.latency.p50_us, mode.latency.p99_us,
        mode.latency.max_us, JsonNumber(mode.bench_cpu_us_per_op),
        JsonNumber(mode.daemon_cpu_us_per_op), JsonNumber(p50_ratio),
        JsonNumber(p99_ratio), absl::StrJoin(mode.round_p50_us, ", ", number),
        absl::StrJoin(round_ratios, ", ", number)));
  }
  return absl::StrFormat(
      "{\n"
      "  \"threads\": %d,\n"
      "  \"size_bytes\": %d,\n"
      "  \"backing\": %s,\n"
      "  \"duration_per_mode_s\": %.3f,\n"
      "  \"rounds\": %d,\n"
      "  \"warmup_s\": %.3f,\n"
      "  \"socket\": %s,\n"
      "  \"spawned_daemon\": %s,\n"
      "  \"modes\": [\n%s\n  ],\n"
      "  \"errors\": %d,\n"
      "  \"first_error\": %s,\n"
      "  \"daemon_before\": %s,\n"
      "  \"daemon_after\": %s\n"
      "}\n",
      report.threads, report.size_bytes, JsonString(report.backing),
      absl::ToDoubleSeconds(report.duration), report.rounds,
      absl::ToDoubleSeconds(report.warmup), JsonString(report.socket_path),
      report.spawned_daemon.empty() ? "null"
                                    : JsonString(report.spawned_daemon),
      absl::StrJoin(modes, ",\n"), report.errors,
      report.errors > 0 ? JsonString(report.first_error) : "null",
      JsonCounts(report.before), JsonCounts(report.after));
}

}  // namespace shmbroker::bench
