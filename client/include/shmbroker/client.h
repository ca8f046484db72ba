// shmbroker::Client: a connection to shmbrokerd.
//
// Connect() opens the fd channel (which is also this process's client
// connection: when the process exits or dies, the daemon ends its leases and
// drops their holds) and a gRPC channel to the daemon's socket.
// Allocate/Attach return mapped Buffers, held under the connection's default
// lease or one from GrantLease. A background thread keeps every lease alive
// (KeepAlive at about TTL/3) for as long as the Client or any of its Buffers
// lives; a lease the daemon ends anyway (this process was stopped past the
// TTL, or someone revoked it) is reported through
// ClientOptions::on_lease_lost and by its Buffers (Buffer::lease_status).
// When the daemon restarts, the Client notices at once (its fd channel
// closes), reconnects and takes its leases and Buffers back (docs/api.md,
// "Restart"); a lease it cannot take back within its TTL is reported lost.
// Errors are absl::Status with the daemon's message (e.g. RESOURCE_EXHAUSTED
// "over capacity: ..."); UNAVAILABLE when no daemon answers. Thread-safe:
// one Client may serve many threads.
//
//   auto client = shmbroker::Client::Connect();
//   auto buffer = (*client)->Allocate({.size = 1 << 20, .name = "frames"});
//   std::memset(buffer->data(), 0, buffer->size());
#ifndef SHMBROKER_CLIENT_CLIENT_H_
#define SHMBROKER_CLIENT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shmbroker/buffer.h"
#include "shmbroker/types.h"
#include "shmbroker/watcher.h"

namespace shmbroker::client {

// What a resume after a daemon restart took back (ClientOptions::on_resumed).
struct ResumeReport {
  // When the fd channel closed, and when the new connection took over.
  absl::Time went_away;
  absl::Time resumed;
  // Leases the new daemon adopted (same ids), and those it refused, with
  // its reason (each also reported through on_lease_lost).
  std::vector<uint64_t> leases_adopted;
  std::vector<std::pair<uint64_t, absl::Status>> leases_lost;
  // Buffers presented and live again (same handles), and those refused
  // (e.g. PERMISSION_DENIED: the fd is not the buffer's memory): the
  // memory stays mapped here, but the daemon no longer counts the hold.
  std::vector<uint64_t> buffers_adopted;
  std::vector<std::pair<uint64_t, absl::Status>> buffers_refused;
};

struct ClientOptions {
  // Empty: $SHMBROKER_SOCKET, /run/shmbroker/broker.sock for root, else
  // $XDG_RUNTIME_DIR/shmbroker/broker.sock (as the daemon).
  std::string socket_path;
  // Deadline of each call.
  absl::Duration timeout = absl::Seconds(10);
  // Open the fd channel, that is, a client connection. Without one, Ping,
  // Describe, List, Status, RevokeLease, LeaseTimeToLive (of an id) and
  // ListLeases work; Allocate, Attach, Release and GrantLease need it.
  bool open_client_connection = true;
  // Make Allocate and Attach (also AttachWhen) on the fd channel rather
  // than over gRPC: one message each way instead of a gRPC round trip
  // (docs/api.md, "Calls on the fd channel"). Same requests, answers and
  // errors. Off: every call goes over gRPC.
  bool calls_on_fd_channel = true;
  // Called (on the lease-keeping thread) once for each lease the daemon
  // ended while this client still wanted it, e.g. NOT_FOUND "lease 7 expired
  // (not renewed within its TTL) at ...", or that a restarted daemon did not
  // take back, or UNAVAILABLE "the daemon at ... went away ... and did not
  // come back within lease 7's TTL of 5s". Must not block for long.
  std::function<void(uint64_t lease_id, const absl::Status& why)> on_lease_lost;
  // After the daemon dies or restarts, reconnect to the same socket and
  // take back the leases and Buffers (docs/api.md, "Restart"). Off: the
  // connection ends with the daemon, as each lease then runs out.
  bool resume_after_restart = true;
  // Called (on the resuming thread) after each resume. Must not block for
  // long.
  std::function<void(const ResumeReport&)> on_resumed;
};

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClientOptions& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& socket_path() const;

  absl::Status Ping();
  absl::StatusOr<Buffer> Allocate(const AllocateOptions& options);
  // Adds a hold under `lease_id` (0: the connection's default lease).
  absl::StatusOr<Buffer> Attach(const std::string& name,
                                Access access = Access::kDefault,
                                uint64_t lease_id = 0);
  absl::StatusOr<Buffer> AttachHandle(uint64_t handle,
                                      Access access = Access::kDefault,
                                      uint64_t lease_id = 0);
  // Attach that waits, without polling, until buffer `name` is created (or
  // created and sealed) and this process may see it, then maps it: the
  // consumer's half of a handoff. The daemon pushes the fd the moment the
  // producer creates or seals the buffer. DEADLINE_EXCEEDED after
  // options.timeout.
  absl::StatusOr<Buffer> AttachWhen(const std::string& name,
                                    const WaitOptions& options);
  // Seals buffer `name` (see Buffer::Seal), which this connection holds,
  // e.g. under a Disown()ed Buffer. Returns it as sealed.
  absl::StatusOr<BufferInfo> Seal(const std::string& name);
  // Drops one hold on `handle`: one of this connection's (e.g. one kept by a
  // Buffer that was Disown()ed), else one under a detached lease of this
  // uid. Returns the holders left.
  absl::StatusOr<uint32_t> Release(uint64_t handle);
  // The same by buffer name.
  absl::StatusOr<uint32_t> ReleaseByName(const std::string& name);
  // Drops one hold on `handle` under `lease_id` (this connection's, or a
  // detached lease of this uid) with a one-way message: no answer, applied
  // before this connection's next call. For taking a hold over, e.g. a
  // pickled transfer; a failure is only logged and counted by the daemon.
  void ReleaseOneWay(uint64_t handle, uint64_t lease_id);

  // Grants a lease (TTL zero: the daemon's default; others are clamped to
  // its bounds) and keeps it alive from now on. A detached lease outlives
  // this connection: after the process exits it lasts its TTL, so a
  // consumer can attach what it holds (the handoff). With keep_alive false
  // the lease is not renewed: it ends after its TTL unless someone revokes
  // it first (a transfer lease, e.g. for a buffer pickled to another
  // process that may never take it).
  absl::StatusOr<LeaseInfo> GrantLease(absl::Duration ttl,
                                       bool detached = false,
                                       bool keep_alive = true);
  // Ends a lease now (its owner's uid or root); returns the bytes reclaimed.
  absl::StatusOr<uint64_t> RevokeLease(uint64_t lease_id);
  // A lease with its remaining TTL and holds (0: the default lease).
  absl::StatusOr<LeaseInfo> LeaseTimeToLive(uint64_t lease_id);
  // The leases of this uid (all of them for root).
  absl::StatusOr<std::vector<LeaseInfo>> ListLeases();
  // This connection's default lease id (0 without a client connection).
  uint64_t default_lease() const;
  absl::StatusOr<BufferInfo> Describe(const std::string& name);
  // Every buffer this process may see (all pages).
  absl::StatusOr<std::vector<BufferInfo>> List();
  // The same, with the revision it reflects (the first page's): a Watch
  // after it misses no change, and may repeat a few that later pages
  // already showed.
  absl::StatusOr<ListResult> ListWithRevision();
  // Follows the changes to the buffers whose name starts with `prefix`
  // (empty: all) that this process may see; returns once the daemon has
  // registered the watcher (so no change after that is missed), or its
  // refusal: INVALID_ARGUMENT (bad prefix, a revision ahead of the
  // daemon's), OUT_OF_RANGE (a revision no longer kept: list again),
  // RESOURCE_EXHAUSTED (--max_watchers_per_connection). Needs no client
  // connection.
  absl::StatusOr<std::unique_ptr<Watcher>> Watch(
      const std::string& prefix, const WatchOptions& options = {});
  absl::StatusOr<DaemonStatus> Status();
  // Whether the daemon reports SERVING on grpc.health.v1 (it does while it
  // can allocate).
  absl::StatusOr<bool> Serving();
  // Unmaps the pooled arenas that no live Buffer points into (they stay
  // mapped for reuse until then, or until the connection closes); returns
  // how many. The daemon sends an arena's fd again when it is next needed.
  size_t TrimArenas();

 private:
  explicit Client(std::shared_ptr<Connection> connection);

  std::shared_ptr<Connection> connection_;
};

}  // namespace shmbroker::client

namespace shmbroker {
using client::Buffer;
using client::Client;
}  // namespace shmbroker

#endif  // SHMBROKER_CLIENT_CLIENT_H_
