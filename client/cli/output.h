// Output of the shmbroker CLI: readable tables, or JSON with --json. The JSON
// shapes are a contract (see docs/cli.md); add fields, never rename them.
#ifndef SHMBROKER_CLIENT_CLI_OUTPUT_H_
#define SHMBROKER_CLIENT_CLI_OUTPUT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "shmbroker/types.h"
#include "shmbroker/watcher.h"

namespace shmbroker::cli {

nlohmann::json BufferJson(const client::BufferInfo& info);
// One Watch event: type, revision, and (but for "lost") the buffer's name,
// handle, size, kind, owner_uid, sealed; "reason" for "released".
nlohmann::json WatchEventJson(const client::WatchEvent& event);
// "7 created frame handle=3 size=4096", "9 released frame handle=3
// size=4096 reason=client_gone".
std::string WatchEventText(const client::WatchEvent& event);
nlohmann::json StatusJson(const client::DaemonStatus& status);
nlohmann::json TenantsJson(const std::vector<client::TenantUsage>& tenants);
std::vector<std::vector<std::string>> TenantRows(
    const std::vector<client::TenantUsage>& tenants);
nlohmann::json LeasesJson(const std::vector<client::LeaseInfo>& leases);
std::vector<std::vector<std::string>> LeaseRows(
    const std::vector<client::LeaseInfo>& leases);

// A table with a header row and left-aligned columns.
std::string Table(const std::vector<std::vector<std::string>>& rows);
std::vector<std::vector<std::string>> BufferRows(
    const std::vector<client::BufferInfo>& buffers, absl::Time now);
std::string StatusText(const client::DaemonStatus& status);
// "42s", "7m", "3h", "2d".
std::string Age(absl::Duration age);

}  // namespace shmbroker::cli

#endif  // SHMBROKER_CLIENT_CLI_OUTPUT_H_
