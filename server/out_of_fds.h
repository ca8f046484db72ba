// OutOfFdsGuard: what an acceptor does when the daemon is out of file
// descriptors (accept fails with EMFILE or ENFILE). Retrying at once would
// spin (a level-triggered epoll keeps reporting the waiting connection; a
// blocking accept fails before it waits), and logging each failure floods
// the log. Instead the acceptor stops accepting for a backoff (100 ms
// doubling to 1 s), then checks whether fds came back. Meanwhile it refuses
// waiting connections one at a time with a spare fd kept for that purpose,
// so a new client is told why instead of hanging. It logs once per episode
// (at most one episode start per 10 s), reports the episode to `on_blocked`
// (health goes NOT_SERVING) and counts refusals in the metrics.
//
// fd numbers are process-wide: the kernel gives the lowest free number to
// whichever thread asks first. Two guards (the fd channel's and gRPC's)
// juggling their spares at once could take each other's freed number (one
// guard's "fds came back" probe landing in the other's spare), so the
// other could neither accept nor refuse and its clients would hang. Every
// guard's spare juggling therefore runs under one process-wide lock.
// Each guard is used by one acceptor thread only; not thread-safe.
#ifndef SHMBROKER_SERVER_OUT_OF_FDS_H_
#define SHMBROKER_SERVER_OUT_OF_FDS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "server/fd_limit.h"
#include "server/log_rate_limiter.h"
#include "server/metrics.h"

namespace shmbroker {

class OutOfFdsGuard {
 public:
  // `socket` names the listener in logs and metrics ("fd_channel", "grpc").
  // `metrics` (not owned) must outlive the guard; `on_blocked` may be empty.
  OutOfFdsGuard(const char* socket, Metrics* metrics,
                std::function<void(bool blocked)> on_blocked);

  // Whether an episode is on: the acceptor should not accept.
  bool blocked() const { return blocked_; }
  // accept failed with `err` (EMFILE or ENFILE): starts an episode or
  // doubles its backoff. Returns how long to wait before Recovered().
  absl::Duration OnOutOfFds(int err);
  // Whether an fd can be opened again; if so, ends the episode.
  bool Recovered();
  // Accepts and closes every connection waiting on `listener` (without
  // blocking), after `tell(fd)` on each; needs the spare fd.
  void RefuseWaiting(int listener, const std::function<void(int fd)>& tell);
  // What a refused client is told.
  std::string Why() const;

 private:
  void ReopenSpare();

  const char* const socket_;
  Metrics* const metrics_;
  const std::function<void(bool)> on_blocked_;
  UniqueFd spare_;  // /dev/null, closed for a moment to accept-and-refuse
  bool blocked_ = false;
  bool logged_ = false;  // this episode's start was logged
  int err_ = 0;
  absl::Duration backoff_;
  absl::Time since_;
  uint64_t refused_ = 0;  // in this episode
  LogRateLimiter episodes_{absl::Seconds(10)};
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_OUT_OF_FDS_H_
