// FdChannel: the daemon's end of the fd channel (framing in
// common/fd_channel_protocol.h) and its table of client connections.
//
// Each accepted connection is one client connection: the daemon reads its
// SO_PEERCRED, opens a Registry client for it, and sends it a session token
// that the client presents as gRPC metadata. Grants' fds are pushed to the
// session before the gRPC reply, so they are waiting when the client looks.
// When the socket closes (exit, crash, SIGKILL) the session ends at once and
// the Registry ends its leases. The daemon hangs up itself on a connection
// whose default lease ended (Hangup). One thread (epoll) watches the listener
// and all sessions; gRPC handlers call Find/Drain/SendFd concurrently.
#ifndef SHMBROKER_SERVER_FD_CHANNEL_H_
#define SHMBROKER_SERVER_FD_CHANNEL_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"
#include "core/identity.h"
#include "core/registry.h"
#include "server/metrics.h"
#include "server/reclaim_latency.h"

namespace shmbroker {

struct Session {
  uint64_t id = 0;
  ClientId client = 0;
  LeaseId default_lease = 0;
  Identity identity;
  std::string token_hex;
  UniqueFd socket;      // closed when the last reference goes
  absl::Mutex read_mu;  // serializes draining client frames
  absl::Mutex send_mu;  // serializes fd frames
  std::atomic<uint64_t> next_grant{1};
  // kRelease and kForgetArena frames taken.
  std::atomic<uint64_t> releases_applied{0};
  // Arenas whose fd this client holds: arena id * 2, plus 1 if writable.
  absl::flat_hash_set<uint64_t> arenas_sent ABSL_GUARDED_BY(send_mu);
  std::atomic<bool> closed{false};
  // KeepAlive rate limit (a token bucket per connection, so that opening
  // new streams does not refill it); see KeepAliveReactor.
  absl::Mutex keepalive_mu;
  double keepalive_tokens ABSL_GUARDED_BY(keepalive_mu) = -1;  // -1: full
  absl::Time keepalive_refilled ABSL_GUARDED_BY(keepalive_mu);
};

class FdChannel {
 public:
  // `listener` is a listening SOCK_SEQPACKET socket. Nothing is owned; all
  // must outlive the FdChannel.
  FdChannel(Registry* registry, int listener, Metrics* metrics,
            ReclaimLatencies* latencies);
  ~FdChannel();  // Stop()s
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;

  absl::Status Start();
  // Stops watching and closes every session (dropping all holds).
  void Stop();

  // The open session with this token, or null.
  std::shared_ptr<Session> Find(const std::string& token_hex) const;
  // Applies frames the client sent before its current call (releases). On
  // EOF or a protocol error the session is closed and FAILED_PRECONDITION
  // returned.
  // With `releases_sent` (what the client says it sent), stops as soon as
  // that many frames are applied.
  absl::Status Drain(Session& session,
                     std::optional<uint64_t> releases_sent = std::nullopt);
  // Drain() unless the client says it has sent no more than
  // `releases_sent` releases and all of them are applied (saves a syscall on
  // every call).
  absl::Status DrainIfBehind(Session& session,
                             std::optional<uint64_t> releases_sent);
  // Sends `fd` for `handle`; returns the grant id. RESOURCE_EXHAUSTED when the
  // client is not reading its channel, FAILED_PRECONDITION when it is closed.
  absl::StatusOr<uint64_t> SendFd(Session& session, Handle handle, int fd);
  // As SendFd for a pooled grant in `arena_id`, but returns 0 without
  // sending when this client already holds that arena's fd (`writable` or
  // not) and has not said it closed it (kForgetArena).
  absl::StatusOr<uint64_t> SendArenaFd(Session& session, Handle handle,
                                       uint64_t arena_id, bool writable,
                                       int fd);
  // Tells the client why (an error frame) and closes its connection. For
  // connections the Registry has already closed (their default lease ended).
  void Hangup(ClientId client, const std::string& why);

 private:
  enum class DrainResult { kOk, kClosed, kProtocolError };

  void Run();
  void Accept();
  DrainResult DrainLocked(Session& session,
                          std::optional<uint64_t> releases_sent,
                          std::string* error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(session.read_mu);
  absl::StatusOr<uint64_t> SendFdLocked(Session& session, Handle handle, int fd)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(session.send_mu);
  void Close(const std::shared_ptr<Session>& session, CloseReason reason,
             const std::string& why);
  std::shared_ptr<Session> FindById(uint64_t id) const;

  Registry* const registry_;
  const int listener_;
  Metrics* const metrics_;
  ReclaimLatencies* const latencies_;
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd that stops Run()
  std::thread thread_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Session>> by_id_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Session>> by_token_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ClientId, std::shared_ptr<Session>> by_client_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_FD_CHANNEL_H_
