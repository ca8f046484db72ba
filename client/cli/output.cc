#include "client/cli/output.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/byte_size.h"

namespace shmbroker::cli {

nlohmann::json BufferJson(const client::BufferInfo& info) {
  nlohmann::json share = nlohmann::json::array();
  for (const client::ShareRule& rule : info.share) {
    share.push_back(client::ShareRuleToString(rule));
  }
  nlohmann::json out = {
      {"name", info.name},
      {"handle", info.handle},
      {"size", info.size},
      {"backing", client::BackingName(info.backing)},
      {"kind", client::KindName(info.kind)},
      {"holders", info.holders},
      {"owner_uid", info.owner_uid},
      {"owner_gid", info.owner_gid},
      {"owner_pid", info.owner_pid},
      {"created_unix_seconds", absl::ToUnixSeconds(info.created)},
      {"charged_bytes", info.charged_bytes},
      {"shm_name", info.shm_name},
      {"share", share},
      {"sealed", info.sealed},
  };
  if (info.kind == client::Kind::kPooled) {
    out["arena"] = info.arena_id;
    out["offset"] = info.offset;
  }
  return out;
}

nlohmann::json WatchEventJson(const client::WatchEvent& event) {
  nlohmann::json out = {
      {"type", client::WatchEventTypeName(event.type)},
      {"revision", event.revision},
  };
  if (event.type == client::WatchEvent::Type::kLost) return out;
  const client::BufferInfo& b = event.buffer;
  out["name"] = b.name;
  out["handle"] = b.handle;
  out["size"] = b.size;
  out["kind"] = client::KindName(b.kind);
  out["owner_uid"] = b.owner_uid;
  out["sealed"] = b.sealed;
  if (event.type == client::WatchEvent::Type::kReleased) {
    out["reason"] = client::ReleaseReasonName(event.reason);
  }
  return out;
}

std::string WatchEventText(const client::WatchEvent& event) {
  if (event.type == client::WatchEvent::Type::kLost) {
    return absl::StrFormat(
        "%d lost: this watcher fell behind; changes from here on were "
        "missed\n",
        event.revision);
  }
  const client::BufferInfo& b = event.buffer;
  std::string line =
      absl::StrFormat("%d %s %s handle=%d size=%d", event.revision,
                      client::WatchEventTypeName(event.type),
                      b.name.empty() ? "-" : b.name, b.handle, b.size);
  if (event.type == client::WatchEvent::Type::kReleased) {
    absl::StrAppend(&line, " reason=", client::ReleaseReasonName(event.reason));
  }
  return line + "\n";
}

namespace {

nlohmann::json LatencyJson(const client::LatencySummary& latency) {
  return {{"samples", latency.samples},
          {"p50_seconds", absl::ToDoubleSeconds(latency.p50)},
          {"p99_seconds", absl::ToDoubleSeconds(latency.p99)},
          {"max_seconds", absl::ToDoubleSeconds(latency.max)}};
}

std::string LatencyText(const client::LatencySummary& latency) {
  if (latency.samples == 0) return "no samples yet";
  return absl::StrFormat("p50 %s, p99 %s, max %s over %d",
                         absl::FormatDuration(latency.p50),
                         absl::FormatDuration(latency.p99),
                         absl::FormatDuration(latency.max), latency.samples);
}

nlohmann::json ArenasJson(const client::PoolStatus& pool) {
  nlohmann::json classes = nlohmann::json::array();
  for (const client::PoolStatus::SizeClass& c : pool.size_classes) {
    classes.push_back({{"size", c.size},
                       {"span_pages", c.span_pages},
                       {"spans", c.spans},
                       {"free_slots", c.free_slots},
                       {"live_slots", c.live_slots}});
  }
  nlohmann::json tenants = nlohmann::json::array();
  for (const client::PoolStatus::Tenant& t : pool.tenants) {
    tenants.push_back({{"uid", t.uid},
                       {"arenas", t.arenas},
                       {"in_use_bytes", t.in_use_bytes}});
  }
  return {
      {"enabled", pool.enabled},
      {"arena_size", pool.arena_size},
      {"pooled_max_size", pool.pooled_max_size},
      {"pooled_large_max_size", pool.pooled_large_max_size},
      {"large_arenas", pool.large_arenas},
      {"count", pool.arenas},
      {"arena_bytes", pool.arena_bytes},
      {"buffers", pool.live_buffers},
      {"in_use_bytes", pool.in_use_bytes},
      {"free_bytes", pool.free_bytes},
      {"span_tail_bytes", pool.span_tail_bytes},
      {"largest_free_run_bytes", pool.largest_free_run_bytes},
      {"scavenged_bytes_total", pool.scavenged_bytes_total},
      {"zeroed_bytes_total", pool.zeroed_bytes_total},
      {"arenas_created_total", pool.arenas_created_total},
      {"arenas_released_total", pool.arenas_released_total},
      {"size_classes", classes},
      {"tenants", tenants},
  };
}

// 1.5MiB, 64KiB, 100B: short, for a status line (exact figures are in
// --json).
std::string RoughBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return absl::StrCat(bytes, "B");
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f%s", value, kUnits[unit]);
}

std::string ArenasText(const client::PoolStatus& pool) {
  if (!pool.enabled) return "pooling off";
  return absl::StrFormat(
      "%d of %s; %d pooled buffers use %s, %s free (largest run %s); %s "
      "scavenged",
      pool.arenas, FormatByteSize(pool.arena_size), pool.live_buffers,
      RoughBytes(pool.in_use_bytes), RoughBytes(pool.free_bytes),
      RoughBytes(pool.largest_free_run_bytes),
      RoughBytes(pool.scavenged_bytes_total));
}

}  // namespace

nlohmann::json StatusJson(const client::DaemonStatus& status) {
  return {
      {"capacity_bytes", status.capacity_bytes},
      {"allocated_bytes", status.allocated_bytes},
      {"committed_bytes", status.committed_bytes},
      {"buffers", status.buffers},
      {"clients", status.clients},
      {"holds", status.holds},
      {"leases", status.leases},
      {"detached_leases", status.detached_leases},
      {"waiters", status.waiters},
      {"watchers", status.watchers},
      {"revision", status.revision},
      {"connection_close_reclaim",
       LatencyJson(status.connection_close_reclaim)},
      {"lease_expiry_reclaim", LatencyJson(status.lease_expiry_reclaim)},
      {"arenas", ArenasJson(status.arenas)},
      {"version", status.version},
      {"started_unix_seconds", absl::ToUnixSeconds(status.started)},
  };
}

nlohmann::json LeasesJson(const std::vector<client::LeaseInfo>& leases) {
  nlohmann::json list = nlohmann::json::array();
  for (const client::LeaseInfo& l : leases) {
    list.push_back(
        {{"id", l.id},
         {"ttl_seconds", absl::ToDoubleSeconds(l.ttl)},
         {"granted_ttl_seconds", absl::ToDoubleSeconds(l.granted_ttl)},
         {"detached", l.detached},
         {"holds", l.holds},
         {"client_pid", l.owner_pid},
         {"owner_uid", l.owner_uid},
         {"connection_default", l.connection_default},
         {"connected", l.connected}});
  }
  return {{"leases", list}};
}

std::vector<std::vector<std::string>> LeaseRows(
    const std::vector<client::LeaseInfo>& leases) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TTL", "GRANTED", "KIND", "HOLDS", "PID", "UID"}};
  for (const client::LeaseInfo& l : leases) {
    const char* kind = l.detached             ? "detached"
                       : l.connection_default ? "default"
                                              : "attached";
    rows.push_back(
        {absl::StrCat(l.id),
         absl::FormatDuration(absl::Trunc(l.ttl, absl::Milliseconds(1))),
         absl::FormatDuration(l.granted_ttl), kind, absl::StrCat(l.holds),
         l.connected ? absl::StrCat(l.owner_pid)
                     : absl::StrCat(l.owner_pid, " (exited)"),
         absl::StrCat(l.owner_uid)});
  }
  return rows;
}

nlohmann::json TenantsJson(const std::vector<client::TenantUsage>& tenants) {
  nlohmann::json list = nlohmann::json::array();
  for (const client::TenantUsage& t : tenants) {
    list.push_back({{"uid", t.uid},
                    {"allocated_bytes", t.allocated_bytes},
                    {"buffers", t.buffers}});
  }
  return {{"tenants", list}};
}

std::vector<std::vector<std::string>> TenantRows(
    const std::vector<client::TenantUsage>& tenants) {
  std::vector<std::vector<std::string>> rows = {
      {"UID", "ALLOCATED", "BUFFERS"}};
  for (const client::TenantUsage& t : tenants) {
    rows.push_back({absl::StrCat(t.uid), absl::StrCat(t.allocated_bytes),
                    absl::StrCat(t.buffers)});
  }
  return rows;
}

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else {
        absl::StrAppend(&line, absl::StrFormat("%-*s  ", widths[i], row[i]));
      }
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string Age(absl::Duration age) {
  const int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(age));
  if (s < 120) return absl::StrCat(s, "s");
  if (s < int64_t{2} * 3600) return absl::StrCat(s / 60, "m");
  if (s < int64_t{2} * 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::vector<std::vector<std::string>> BufferRows(
    const std::vector<client::BufferInfo>& buffers, absl::Time now) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "HANDLE", "SIZE", "BACKING", "KIND", "HOLDERS", "OWNER", "AGE"}};
  for (const client::BufferInfo& b : buffers) {
    rows.push_back({b.name.empty() ? "-" : b.name, absl::StrCat(b.handle),
                    FormatByteSize(b.size), client::BackingName(b.backing),
                    client::KindName(b.kind), absl::StrCat(b.holders),
                    absl::StrCat(b.owner_uid), Age(now - b.created)});
  }
  return rows;
}

std::string StatusText(const client::DaemonStatus& status) {
  auto percent = [&](uint64_t bytes) {
    return status.capacity_bytes == 0
               ? 0.0
               : 100.0 * static_cast<double>(bytes) /
                     static_cast<double>(status.capacity_bytes);
  };
  return Table({
      {"capacity",
       absl::StrFormat("%s (%d bytes)", FormatByteSize(status.capacity_bytes),
                       status.capacity_bytes)},
      {"allocated", absl::StrFormat("%d bytes (%.1f%%)", status.allocated_bytes,
                                    percent(status.allocated_bytes))},
      {"committed",
       absl::StrFormat("%s (%.1f%%): dedicated buffers and whole arenas",
                       RoughBytes(status.committed_bytes),
                       percent(status.committed_bytes))},
      {"buffers", absl::StrCat(status.buffers)},
      {"clients", absl::StrCat(status.clients)},
      {"holds", absl::StrCat(status.holds)},
      {"leases", absl::StrFormat("%d (%d detached)", status.leases,
                                 status.detached_leases)},
      {"watchers",
       absl::StrFormat("%d (revision %d)", status.watchers, status.revision)},
      {"reclaim after close", LatencyText(status.connection_close_reclaim)},
      {"reclaim after expiry", LatencyText(status.lease_expiry_reclaim)},
      {"arenas", ArenasText(status.arenas)},
      {"version", status.version},
  });
}

}  // namespace shmbroker::cli
