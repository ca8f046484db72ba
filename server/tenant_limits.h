// TenantLimits: the uids an operator gives their own quotas, in place of
// --max_bytes_per_uid, --max_buffers_per_uid and --max_connections_per_uid,
// read from the --tenant_limits file at start and again on SIGHUP.
//
// The file is JSON (docs/operations.md, "Quotas per tenant"):
//
//   {"tenants": [
//     {"uid": 1000, "max_bytes": "8GiB", "max_buffers": 5000},
//     {"user": "inference", "max_connections": 1024}
//   ]}
//
// Each tenant names a uid (a number) or a user (looked up in the passwd
// database when the file is read) and sets any of the three limits; what it
// leaves out is the flag's default. A size is a number of bytes or a string
// as --capacity takes it. Every value is at least 1; one at or above the
// daemon's own limit (--capacity, --max_buffers) means no per-uid limit of
// that kind. Anything else (an unknown key, a uid named twice, a bad size,
// a file over kMaxFileBytes or with over kMaxTenants tenants) refuses the
// whole file with INVALID_ARGUMENT naming where, quoting at most a few
// dozen bytes of it: a bad file never half-applies.
#ifndef SHMBROKER_SERVER_TENANT_LIMITS_H_
#define SHMBROKER_SERVER_TENANT_LIMITS_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tenant_quotas.h"

namespace shmbroker {

inline constexpr size_t kMaxTenantLimitsFileBytes = 1 << 20;
inline constexpr size_t kMaxTenants = 10000;

// The limits of the uids a file names, each complete (the defaults filled
// in where the file says nothing).
struct TenantLimits {
  OwnQuotas quotas;                                  // for the Registry
  absl::flat_hash_map<uid_t, uint32_t> connections;  // for GrpcConnections
  size_t tenants() const { return quotas.size(); }
};

// What a uid the file names has where it leaves a limit out.
struct TenantDefaults {
  uint64_t max_bytes = 0;
  uint64_t max_buffers = 0;
  uint32_t max_connections = 0;
};

// The file's text; errors name the tenant (by its index) and the key.
absl::StatusOr<TenantLimits> ParseTenantLimits(absl::string_view json,
                                               const TenantDefaults& defaults);
// Reads and parses `path`; errors begin with the path.
absl::StatusOr<TenantLimits> ReadTenantLimits(const std::string& path,
                                              const TenantDefaults& defaults);

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_TENANT_LIMITS_H_
