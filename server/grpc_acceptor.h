// GrpcAcceptor accepts gRPC connections on the daemon's own listener, records
// each connection's SO_PEERCRED in the PeerTable, and hands the fd to gRPC.
// gRPC C++ 1.51 cannot tell a handler who its peer is; this is how every call
// gets a kernel-verified identity. One thread, waiting in poll() and accept().
//
// A connection over --max_connections_per_uid (GrpcConnections) is handed to
// gRPC too, marked refused, so that the client's calls end with a clear
// RESOURCE_EXHAUSTED naming the flag rather than a bare hang-up; the
// acceptor shuts it down kRefusedGrace later through a duplicate of its fd
// (a socket's shutdown cannot hit another connection, as a reused fd number
// could). At most kMaxRefused are pending; beyond that the oldest is shut
// down at once.
#ifndef SHMBROKER_SERVER_GRPC_ACCEPTOR_H_
#define SHMBROKER_SERVER_GRPC_ACCEPTOR_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "core/identity.h"
#include "server/grpc_connections.h"
#include "server/metrics.h"
#include "server/out_of_fds.h"
#include "server/peer_credentials.h"

namespace grpc {
class Server;
}

namespace shmbroker {

class GrpcAcceptor {
 public:
  // Neither pointer nor `listener` is owned; all must outlive Stop().
  // `on_accept_blocked` hears when the daemon runs out of fds to accept
  // with, and when it has them again (see OutOfFdsGuard).
  GrpcAcceptor(int listener, grpc::Server* server, PeerTable* peers,
               GrpcConnections* connections, Metrics* metrics,
               std::function<void(bool blocked)> on_accept_blocked = nullptr)
      : listener_(listener),
        server_(server),
        peers_(peers),
        connections_(connections),
        metrics_(metrics),
        out_of_fds_("grpc", metrics, std::move(on_accept_blocked)) {}
  ~GrpcAcceptor() { Stop(); }

  void Start();
  // Stops accepting (shuts the listener down) and joins the thread.
  void Stop();

 private:
  void Run();
  // Out of fds: backs off until fds come back, refusing whoever connects
  // meanwhile. False when stopped.
  bool WaitForFds(int err);

  static constexpr absl::Duration kRefusedGrace = absl::Seconds(1);
  static constexpr size_t kMaxRefused = 16;
  struct Refused {
    UniqueFd dup;  // the same socket gRPC has
    absl::Time shut_at;
  };
  // Hands a refused connection to gRPC and queues its shutdown; closes it
  // outright when its fd cannot be duplicated.
  void Refuse(int fd, const Identity& identity, absl::Status why);
  // Shuts down the refused connections that are due; how long until the
  // next one is (InfiniteDuration when none is pending).
  absl::Duration ShutDueRefused();

  const int listener_;
  grpc::Server* const server_;
  PeerTable* const peers_;
  GrpcConnections* const connections_;
  Metrics* const metrics_;
  std::deque<Refused> refused_;  // oldest first; the acceptor thread's
  OutOfFdsGuard out_of_fds_;     // used by the acceptor thread only
  absl::Notification stopping_;
  std::thread thread_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_GRPC_ACCEPTOR_H_
