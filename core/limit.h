// Limit: the configured limits the daemon enforces, most of them in the core.
// A refusal because one was reached carries the limit (LimitError), so that
// the edge can tell the caller how it is set: the daemon names its flag
// (FlagFor in server/config.h), which the core knows nothing about, and
// counts the refusal per limit.
#ifndef SHMBROKER_CORE_LIMIT_H_
#define SHMBROKER_CORE_LIMIT_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace shmbroker {

enum class Limit {
  kCapacity,    // RegistryOptions::capacity_bytes
  kMaxBuffers,  // RegistryOptions::max_buffers
  // Client connections (fd channels), not gRPC connections.
  kMaxConnectionsPerUid,      // RegistryOptions::max_connections_per_uid
  kMaxHoldsPerLease,          // LeaseOptions::max_holds_per_lease
  kMaxLeasesPerConnection,    // LeaseOptions::max_leases_per_connection
  kMaxDetachedLeasesPerUid,   // LeaseOptions::max_detached_leases_per_uid
  kPooledMaxSize,             // PooledAllocatorOptions::pooled_max_size
  kPooledLargeMaxSize,        // PooledAllocatorOptions::large_max_size
  kPoolingOff,                // the Registry has no pooled allocator
  kMaxWaitersPerConnection,   // RegistryOptions::max_waiters_per_connection
  kFdReserve,                 // RegistryOptions::max_segment_fd
  kMaxWatchersPerConnection,  // WatchOptions::max_watchers_per_connection
  kWatchQueueEvents,          // WatchOptions::queue_events
  kWatchHistory,              // WatchOptions::history
  kMaxBytesPerUid,            // RegistryOptions::max_bytes_per_uid
  kMaxBuffersPerUid,          // RegistryOptions::max_buffers_per_uid
  // gRPC connections per uid: enforced by the server where it accepts them.
  kMaxGrpcConnectionsPerUid,
  // Calls per gRPC connection a second: enforced by the server
  // (server/peer_credentials.h).
  kMaxCallsPerSecond,
};
// One past the last Limit, to iterate over them.
inline constexpr int kLimitCount =
    static_cast<int>(Limit::kMaxCallsPerSecond) + 1;

inline constexpr char kLimitPayloadUrl[] = "type.shmbroker/limit";

// A status with `code` and `message` that says `limit` refused it.
inline absl::Status LimitError(absl::StatusCode code, Limit limit,
                               std::string message) {
  absl::Status status(code, message);
  status.SetPayload(kLimitPayloadUrl,
                    absl::Cord(absl::StrCat(static_cast<int>(limit))));
  return status;
}

// RESOURCE_EXHAUSTED, the usual code for a limit reached.
inline absl::Status LimitReached(Limit limit, std::string message) {
  return LimitError(absl::StatusCode::kResourceExhausted, limit,
                    std::move(message));
}

// `status` with `context` before its message, keeping its code and limit.
inline absl::Status WithContext(const absl::Status& status,
                                absl::string_view context) {
  absl::Status out(status.code(), absl::StrCat(context, status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

// The limit a status says refused it, if any.
inline std::optional<Limit> LimitOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kLimitPayloadUrl);
  int value = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &value)) {
    return std::nullopt;
  }
  return static_cast<Limit>(value);
}

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_LIMIT_H_
