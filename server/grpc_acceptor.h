// GrpcAcceptor accepts gRPC connections on the daemon's own listener, records
// each connection's SO_PEERCRED in the PeerTable, and hands the fd to gRPC.
// gRPC C++ 1.51 cannot tell a handler who its peer is; this is how every call
// gets a kernel-verified identity. One thread, blocking in accept().
#ifndef SHMBROKER_SERVER_GRPC_ACCEPTOR_H_
#define SHMBROKER_SERVER_GRPC_ACCEPTOR_H_

#include <thread>

#include "server/peer_credentials.h"

namespace grpc {
class Server;
}

namespace shmbroker {

class GrpcAcceptor {
 public:
  // Neither pointer nor `listener` is owned; all must outlive Stop().
  GrpcAcceptor(int listener, grpc::Server* server, PeerTable* peers)
      : listener_(listener), server_(server), peers_(peers) {}
  ~GrpcAcceptor() { Stop(); }

  void Start();
  // Stops accepting (shuts the listener down) and joins the thread.
  void Stop();

 private:
  void Run();

  const int listener_;
  grpc::Server* const server_;
  PeerTable* const peers_;
  std::thread thread_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_GRPC_ACCEPTOR_H_
