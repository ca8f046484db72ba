// GrpcAcceptor accepts gRPC connections on the daemon's own listener, records
// each connection's SO_PEERCRED in the PeerTable, and hands the fd to gRPC.
// gRPC C++ 1.51 cannot tell a handler who its peer is; this is how every call
// gets a kernel-verified identity. One thread, blocking in accept().
#ifndef SHMBROKER_SERVER_GRPC_ACCEPTOR_H_
#define SHMBROKER_SERVER_GRPC_ACCEPTOR_H_

#include <functional>
#include <thread>

#include "absl/synchronization/notification.h"
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
               Metrics* metrics,
               std::function<void(bool blocked)> on_accept_blocked = nullptr)
      : listener_(listener),
        server_(server),
        peers_(peers),
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

  const int listener_;
  grpc::Server* const server_;
  PeerTable* const peers_;
  OutOfFdsGuard out_of_fds_;  // used by the acceptor thread only
  absl::Notification stopping_;
  std::thread thread_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_GRPC_ACCEPTOR_H_
