// Kernel-verified identity of the process at the other end of a Unix socket.
#ifndef SHMBROKER_SERVER_PEER_CREDENTIALS_H_
#define SHMBROKER_SERVER_PEER_CREDENTIALS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/identity.h"
#include "server/token_bucket.h"

namespace shmbroker {

// SO_PEERCRED of a connected Unix socket.
absl::StatusOr<Identity> PeerCredentials(int fd);

// Identity of each gRPC connection, keyed by the fd the daemon accepted it on
// and handed to gRPC (ServerContext::peer() then reads "fd:N"). gRPC closes
// that fd when the connection ends and the number may be reused, so the
// entry is overwritten at every accept. A connection the daemon refused
// (over --max_connections_per_uid) is handed to gRPC all the same, so that
// its calls are answered with `refusal` until the acceptor closes it. Each
// connection may make `max_calls_per_second` calls a second, after a burst
// of as many (--max_calls_per_second): a client looping on calls cannot
// take every handler thread from the others.
// Thread-safe.
class PeerTable {
 public:
  explicit PeerTable(uint32_t max_calls_per_second)
      : max_calls_per_second_(max_calls_per_second) {}

  void Set(int fd, const Identity& identity,
           absl::Status refusal = absl::OkStatus()) {
    absl::MutexLock lock(&mu_);
    peers_[fd] = Peer{identity, std::move(refusal),
                      std::make_shared<TokenBucket>(max_calls_per_second_,
                                                    max_calls_per_second_)};
  }
  // Counts a call from the gRPC peer "fd:N" and returns its identity;
  // NOT_FOUND, the connection's refusal, or RESOURCE_EXHAUSTED
  // (Limit::kMaxCallsPerSecond) when it is over its rate.
  absl::StatusOr<Identity> AdmitCall(const std::string& peer) const;

 private:
  struct Peer {
    Identity identity;
    absl::Status refusal;
    std::shared_ptr<TokenBucket> calls;  // shared: the bucket has a mutex
  };
  const uint32_t max_calls_per_second_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, Peer> peers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_PEER_CREDENTIALS_H_
