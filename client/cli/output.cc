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
  return {
      {"name", info.name},
      {"handle", info.handle},
      {"size", info.size},
      {"backing", client::BackingName(info.backing)},
      {"holders", info.holders},
      {"owner_uid", info.owner_uid},
      {"owner_gid", info.owner_gid},
      {"owner_pid", info.owner_pid},
      {"created_unix_seconds", absl::ToUnixSeconds(info.created)},
      {"charged_bytes", info.charged_bytes},
      {"shm_name", info.shm_name},
      {"share", share},
  };
}

nlohmann::json StatusJson(const client::DaemonStatus& status) {
  return {
      {"capacity_bytes", status.capacity_bytes},
      {"allocated_bytes", status.allocated_bytes},
      {"buffers", status.buffers},
      {"clients", status.clients},
      {"holds", status.holds},
      {"version", status.version},
      {"started_unix_seconds", absl::ToUnixSeconds(status.started)},
  };
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
  if (s < 2 * 3600) return absl::StrCat(s / 60, "m");
  if (s < 2 * 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::vector<std::vector<std::string>> BufferRows(
    const std::vector<client::BufferInfo>& buffers, absl::Time now) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "HANDLE", "SIZE", "BACKING", "HOLDERS", "OWNER", "AGE"}};
  for (const client::BufferInfo& b : buffers) {
    rows.push_back({b.name.empty() ? "-" : b.name, absl::StrCat(b.handle),
                    FormatByteSize(b.size), client::BackingName(b.backing),
                    absl::StrCat(b.holders), absl::StrCat(b.owner_uid),
                    Age(now - b.created)});
  }
  return rows;
}

std::string StatusText(const client::DaemonStatus& status) {
  const double percent = status.capacity_bytes == 0
                             ? 0.0
                             : 100.0 *
                                   static_cast<double>(status.allocated_bytes) /
                                   static_cast<double>(status.capacity_bytes);
  return Table({
      {"capacity",
       absl::StrFormat("%s (%d bytes)", FormatByteSize(status.capacity_bytes),
                       status.capacity_bytes)},
      {"allocated",
       absl::StrFormat("%d bytes (%.1f%%)", status.allocated_bytes, percent)},
      {"buffers", absl::StrCat(status.buffers)},
      {"clients", absl::StrCat(status.clients)},
      {"holds", absl::StrCat(status.holds)},
      {"version", status.version},
  });
}

}  // namespace shmbroker::cli
