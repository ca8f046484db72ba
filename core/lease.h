// Leases: the lifetimes that holds live under (etcd's lease model).
//
// A lease has a time-to-live chosen by the daemon within configured bounds.
// Its holder renews it (KeepAlive) before the deadline; a lease that is not
// renewed expires, and expiry, like revocation, drops every hold under it.
// Each client connection gets a default lease when it opens; a connection may
// grant more. A lease belongs to the connection that granted it and ends when
// that connection closes, unless it was granted *detached*: then it outlives
// the connection (the producer -> consumer handoff) and ends only by TTL or
// revocation. When a connection's default lease ends, the connection is over.
#ifndef SHMBROKER_CORE_LEASE_H_
#define SHMBROKER_CORE_LEASE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/identity.h"
#include "core/ids.h"

namespace shmbroker {

struct LeaseOptions {
  absl::Duration min_ttl = absl::Seconds(1);
  absl::Duration default_ttl = absl::Seconds(10);
  absl::Duration max_ttl = absl::Hours(1);
  // Leases a connection may have besides its default one.
  uint32_t max_leases_per_connection = 1024;
  // Detached leases one uid may have at a time (they outlive connections).
  uint32_t max_detached_leases_per_uid = 1024;
  uint32_t max_holds_per_lease = 65536;
  // Buffers an ended lease lets go of per step: its holds are dropped in
  // steps of this many, the Registry's lock released in between, so that
  // however many it held, other calls wait for one step at most. 16, not
  // 64: during a reclaim of 100,000 buffers, other calls' p99 came closer
  // to the idle Ping's (median 1.9 times instead of 2.3 for Status), and
  // the reclaim took three times as long (docs/performance.md, "Steps of
  // 16").
  uint32_t reclaim_batch = 16;
  // How long a drain sleeps between two steps. It gives the drain's CPU
  // up, so that threads woken on that CPU (the gRPC and fd-channel threads
  // of other calls) run, instead of waiting for the drain's time slice to
  // end: on two cores that wait made other calls take 1.5-4 ms during a
  // reclaim of 100,000 buffers (docs/performance.md, "Reclaim in steps").
  // The kernel rounds it up to its timer slack (50 us by default). Zero:
  // no sleep (the fuzzer's choice: it has no other thread to serve).
  absl::Duration reclaim_pause = absl::Microseconds(1);
};
inline constexpr absl::Duration kMaxReclaimPause = absl::Milliseconds(1);

struct LeaseInfo {
  LeaseId id = 0;
  Identity owner;           // who granted it, as the kernel reported
  ConnectionId client = 0;  // its connection; 0 once a detached lease's closed
  bool detached = false;
  bool connection_default = false;
  absl::Duration granted_ttl;
  absl::Time granted;
  absl::Time deadline;
  uint64_t holds = 0;
};

// The TTL a Grant asking for `requested` gets: the default for zero, else
// `requested` clamped to [min_ttl, max_ttl]. INVALID_ARGUMENT if negative.
absl::StatusOr<absl::Duration> ClampTtl(const LeaseOptions& options,
                                        absl::Duration requested);

// INVALID_ARGUMENT unless 0 < min_ttl <= default_ttl <= max_ttl and the
// limits are positive.
absl::Status ValidateLeaseOptions(const LeaseOptions& options);

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_LEASE_H_
