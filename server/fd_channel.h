// FdChannel: the daemon's end of the fd channel (protocol and ordering rules
// in common/fd_channel_protocol.h) and its table of client connections.
//
// Each accepted socket is one client connection: FdChannel reads its
// SO_PEERCRED, opens it in the Registry (which grants its default lease),
// and greets it with its token. gRPC handlers find the connection by token,
// apply its one-way frames before their call (rule 2), and push fds to it
// before replying (rules 1 and 3). When the socket closes (exit, crash,
// SIGKILL) the connection ends at once and the Registry ends its leases
// (on a thread of its own: server/connection_closer.h); the daemon hangs up
// itself on a connection whose default lease ended.
// Thread-safe: one thread (epoll) watches the listener and every
// connection; gRPC handlers call the rest concurrently.
#ifndef SHMBROKER_SERVER_FD_CHANNEL_H_
#define SHMBROKER_SERVER_FD_CHANNEL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"
#include "core/registry.h"
#include "server/client_connection.h"
#include "server/connection_closer.h"
#include "server/metrics.h"
#include "server/out_of_fds.h"
#include "server/reclaim_latency.h"

namespace shmbroker {

// Serves the calls clients make on the fd channel (BrokerService does, in
// server/broker_service_fd_calls.cc). Called on the event loop or on a
// gRPC handler's thread (rule 2 of common/fd_channel_protocol.h); it must
// not block, and answers each call exactly once with FdChannel::SendReply,
// then or later (a waiting Attach).
class FdCallHandler {
 public:
  virtual ~FdCallHandler() = default;
  virtual void OnCall(const std::shared_ptr<ClientConnection>& connection,
                      fdchannel::Call call) = 0;
};

class FdChannel {
 public:
  // `listener` is a listening SOCK_SEQPACKET socket. Nothing is owned; all
  // must outlive the FdChannel. Each connection may send
  // `keepalive_per_second` KeepAlive messages a second, and
  // `frames_per_second` frames: the event loop stops reading a connection
  // over that rate for kFramePause (its sends then block in its own
  // socket buffer), whatever the frames are. `on_accept_blocked`
  // hears when the daemon runs out of fds to accept with, and when it has
  // them again (see OutOfFdsGuard).
  FdChannel(Registry* registry, int listener, Metrics* metrics,
            ReclaimLatencies* latencies, uint32_t keepalive_per_second,
            uint32_t frames_per_second,
            std::function<void(bool blocked)> on_accept_blocked = nullptr);
  ~FdChannel();  // Stop()s
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;

  absl::Status Start();
  // Stops watching and closes every connection (dropping all holds).
  void Stop();
  // Serves calls with `handler` from now on (not owned; it must outlive
  // the FdChannel or be replaced first). Null, as at first: calls are
  // answered UNAVAILABLE (the daemon is starting or stopping).
  void ServeCalls(FdCallHandler* handler) ABSL_LOCKS_EXCLUDED(calls_mu_);

  // The open connection with this token, or null.
  std::shared_ptr<ClientConnection> Find(const std::string& token_hex) const;
  // Applies the one-way frames the client sent before its current call
  // (rule 2): with `frames_sent` (the client's count), until that many are
  // applied, and not at all if they are already; without it, every frame
  // waiting. On EOF or a protocol error the connection is closed and
  // FAILED_PRECONDITION returned. With `throttled` (the event loop), stops
  // early when the connection is over its frame rate and says so there.
  absl::Status ApplyPending(ClientConnection& connection,
                            std::optional<uint64_t> frames_sent,
                            bool* throttled = nullptr);
  // Sends `fd` for a grant of `handle`; returns the grant id.
  // RESOURCE_EXHAUSTED when the client is not reading its channel,
  // FAILED_PRECONDITION when it is closed.
  absl::StatusOr<uint64_t> SendFd(ClientConnection& connection, Handle handle,
                                  int fd);
  // As SendFd for a pooled grant, but returns 0 without sending when this
  // client already holds the arena's fd in that mode (rule 3).
  absl::StatusOr<uint64_t> SendArenaFd(ClientConnection& connection,
                                       Handle handle, fdchannel::ArenaKey arena,
                                       int fd);
  // Answers a call made on the fd channel. RESOURCE_EXHAUSTED when the
  // client is not reading its channel, FAILED_PRECONDITION when it is
  // closed.
  absl::Status SendReply(ClientConnection& connection,
                         const fdchannel::Reply& reply);
  // Tells the client why (an error frame) and closes its connection. For
  // connections the Registry has already closed (their default lease ended).
  void Hangup(ConnectionId id, const std::string& why);

 private:
  void Run();
  void Accept();
  // Out of fds: stop watching the listener until the backoff has passed.
  void StopAccepting(int err);
  // The backoff has passed: accept again if fds came back, else refuse
  // whoever waits and back off further.
  void RetryAccepting();
  absl::StatusOr<std::shared_ptr<ClientConnection>> Open(UniqueFd socket);
  // Reads and applies frames; an error says why the connection must close
  // (INVALID_ARGUMENT: a protocol error; else the peer hung up).
  absl::Status ApplyLocked(ClientConnection& connection,
                           std::optional<uint64_t> frames_sent, bool* throttled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(connection.read_mu);
  // The event loop: `connection` has input or hung up.
  void OnEvent(ClientConnection& connection, uint32_t events);
  // Over its frame rate: stop reading it until kFramePause has passed.
  void Pause(ClientConnection& connection);
  // Reads the paused connections whose pause is over again; returns when
  // the next pause ends (InfiniteFuture: none).
  absl::Time ResumePaused();
  // `fd`: the descriptor that came with a Present frame (none otherwise).
  void Apply(ClientConnection& connection, fdchannel::FromClient frame,
             UniqueFd fd);
  void ApplyCall(ClientConnection& connection, fdchannel::Call call);
  // Best effort: the connection closes next, whether the client reads it.
  static void SendError(int sock, const std::string& message);
  absl::StatusOr<uint64_t> SendFdLocked(ClientConnection& connection,
                                        Handle handle, int fd)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(connection.send_mu);
  // Sends `frame`, `payload` after it and `fd` (-1: none) without blocking.
  // `what` names the kind in errors ("descriptors", "replies").
  absl::Status SendLocked(ClientConnection& connection,
                          const fdchannel::Frame& frame,
                          absl::string_view payload, int fd,
                          absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(connection.send_mu);
  void Close(const std::shared_ptr<ClientConnection>& connection,
             CloseReason reason, const std::string& why);
  std::shared_ptr<ClientConnection> FindById(ConnectionId id) const;

  Registry* const registry_;
  const int listener_;
  Metrics* const metrics_;
  ReclaimLatencies* const latencies_;
  const uint32_t keepalive_per_second_;
  const uint32_t frames_per_second_;
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd that stops Run()
  std::thread thread_;
  OutOfFdsGuard out_of_fds_;    // used by the Run() thread only
  absl::Time retry_accept_at_;  // while out_of_fds_.blocked()
  ConnectionCloser closer_;
  // Connections not read from until then (Run() thread only).
  absl::flat_hash_map<ConnectionId, absl::Time> paused_;

  // Held shared while a handler serves a call, so that ServeCalls(nullptr)
  // returns only once no call is inside the old handler.
  absl::Mutex calls_mu_;
  FdCallHandler* calls_ ABSL_GUARDED_BY(calls_mu_) = nullptr;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<ConnectionId, std::shared_ptr<ClientConnection>> by_id_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<ClientConnection>> by_token_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_FD_CHANNEL_H_
