#include "core/lease.h"

#include "absl/strings/str_format.h"

namespace shmbroker {

absl::StatusOr<absl::Duration> ClampTtl(const LeaseOptions& options,
                                        absl::Duration requested) {
  if (requested < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "bad ttl: %s (must be positive, or zero for the default %s)",
        absl::FormatDuration(requested),
        absl::FormatDuration(options.default_ttl)));
  }
  if (requested == absl::ZeroDuration()) return options.default_ttl;
  if (requested < options.min_ttl) return options.min_ttl;
  if (requested > options.max_ttl) return options.max_ttl;
  return requested;
}

absl::Status ValidateLeaseOptions(const LeaseOptions& options) {
  if (!(absl::ZeroDuration() < options.min_ttl &&
        options.min_ttl <= options.default_ttl &&
        options.default_ttl <= options.max_ttl)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "lease TTLs must satisfy 0 < min <= default <= max, got min %s, "
        "default %s, max %s",
        absl::FormatDuration(options.min_ttl),
        absl::FormatDuration(options.default_ttl),
        absl::FormatDuration(options.max_ttl)));
  }
  if (options.max_leases_per_connection == 0 ||
      options.max_detached_leases_per_uid == 0 ||
      options.max_holds_per_lease == 0 || options.reclaim_batch == 0) {
    return absl::InvalidArgumentError("lease limits must be positive");
  }
  // A longer pause would make a reclaim of 100,000 holds (1,563 steps of
  // 64) take minutes.
  if (options.reclaim_pause < absl::ZeroDuration() ||
      options.reclaim_pause > kMaxReclaimPause) {
    return absl::InvalidArgumentError(
        absl::StrFormat("the reclaim pause must be from 0 to %s, got %s",
                        absl::FormatDuration(kMaxReclaimPause),
                        absl::FormatDuration(options.reclaim_pause)));
  }
  return absl::OkStatus();
}

}  // namespace shmbroker
