// GrpcConnections: the gRPC connections each uid has open, for
// --max_connections_per_uid (or a uid's own limit from --tenant_limits).
// The acceptor admits or refuses each connection by the uid the kernel
// reports for it (SO_PEERCRED), before gRPC sees it.
//
// gRPC 1.51 does not say when it closes a connection it was handed, so a
// connection is known by its fd number and the socket's inode: it is still
// open while that fd refers to that socket. The number is reused once gRPC
// closes it, which the next accept of that number shows at once; a uid at
// its limit has its other entries checked (one fstat each) before it is
// refused, so a closed connection never counts against it for long.
// Thread-safe.
#ifndef SHMBROKER_SERVER_GRPC_CONNECTIONS_H_
#define SHMBROKER_SERVER_GRPC_CONNECTIONS_H_

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace shmbroker {

class GrpcConnections {
 public:
  explicit GrpcConnections(uint32_t max_per_uid) : max_per_uid_(max_per_uid) {}

  // Counts `fd`, just accepted from `uid`, or returns RESOURCE_EXHAUSTED
  // (Limit::kMaxGrpcConnectionsPerUid) with the uid's count when it has
  // max_per_uid open already. A refused fd is not counted.
  absl::Status Admit(int fd, uid_t uid);
  // Gives the uids in `own` their own limit instead of max_per_uid, in place
  // of any given before (--tenant_limits). Open connections are kept.
  void SetOwnLimits(absl::flat_hash_map<uid_t, uint32_t> own);
  // Open connections of `uid` (checking each), and of everyone.
  uint32_t OpenFor(uid_t uid);
  uint64_t Open();

 private:
  struct Entry {
    int fd;
    dev_t dev;
    ino_t ino;
  };
  // Drops the entries of `uid` whose fd no longer refers to their socket.
  void PruneLocked(uid_t uid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetFdLocked(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint32_t max_per_uid_;
  absl::Mutex mu_;
  absl::flat_hash_map<uid_t, uint32_t> own_max_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uid_t, std::vector<Entry>> by_uid_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, uid_t> uid_of_fd_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_GRPC_CONNECTIONS_H_
