// ClientConnection: the daemon's side of one client connection, i.e. one
// connected fd channel (common/fd_channel_protocol.h) and the registry's
// connection with its default lease. FdChannel creates and closes them;
// gRPC handlers find them by token and use them concurrently. Shared by
// shared_ptr; the socket closes when the last reference goes.
#ifndef SHMBROKER_SERVER_CLIENT_CONNECTION_H_
#define SHMBROKER_SERVER_CLIENT_CONNECTION_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"
#include "core/identity.h"
#include "core/ids.h"
#include "server/log_rate_limiter.h"
#include "server/token_bucket.h"

namespace shmbroker {

// Why the daemon closed a client connection (a metrics label).
// kLeaseEnded: its default lease expired or was revoked.
enum class CloseReason { kHangup, kProtocolError, kShutdown, kLeaseEnded };

inline constexpr absl::Duration kConnectionWarningInterval = absl::Seconds(10);

struct ClientConnection {
  ClientConnection(ConnectionId id, LeaseId default_lease, Identity identity,
                   std::string token_hex, UniqueFd socket,
                   uint32_t keepalive_per_second, uint32_t frames_per_second)
      : id(id),
        default_lease(default_lease),
        identity(identity),
        token_hex(std::move(token_hex)),
        socket(std::move(socket)),
        keepalive_rate(keepalive_per_second, keepalive_per_second),
        frame_rate(frames_per_second, frames_per_second) {}

  const ConnectionId id;  // the registry's id, also the epoll tag
  const LeaseId default_lease;
  const Identity identity;
  const std::string token_hex;
  const UniqueFd socket;

  absl::Mutex read_mu;  // one reader of client frames at a time (rule 2)
  absl::Mutex send_mu;  // one writer of fd frames at a time
  std::atomic<uint64_t> next_grant{1};
  // One-way frames taken from the client so far (rule 2).
  std::atomic<uint64_t> frames_applied{0};
  // Arena fds this client holds (rule 3).
  absl::flat_hash_set<fdchannel::ArenaKey> arenas_sent ABSL_GUARDED_BY(send_mu);
  std::atomic<bool> closed{false};
  // KeepAlive messages over all its streams, so that opening new streams
  // does not refill it.
  TokenBucket keepalive_rate;
  // Frames the event loop reads from it (--max_frames_per_second); over
  // it, the loop stops reading it for a while (FdChannel::Pause).
  TokenBucket frame_rate;
  // Warnings about what this client sends (bad releases, KeepAlive over its
  // rate): one line per interval, so a flood of bad frames cannot flood the
  // log. The daemon-wide limiter (LogRateLimits) applies as well.
  LogRateLimiter warnings{kConnectionWarningInterval};
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_CLIENT_CONNECTION_H_
