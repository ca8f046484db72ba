// KeepAliveReactor: one KeepAlive stream. Reads a request, renews the lease,
// writes the answer, then reads the next: one message in flight, so a
// flooding stream occupies one handler at a time, and it is cut off beyond
// --keepalive_max_per_second (a token bucket per client connection, with a
// one-second burst, shared by all its streams).
// Failures for one lease are answered in that lease's response and the
// stream goes on. Owned by gRPC; deletes itself when done. Its reactions
// run one at a time (one operation in flight), so it has no lock
// (server/reactor_order.h tells ThreadSanitizer so).
#ifndef SHMBROKER_SERVER_KEEPALIVE_REACTOR_H_
#define SHMBROKER_SERVER_KEEPALIVE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "server/client_connection.h"
#include "server/metrics.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker {

class KeepAliveReactor final
    : public grpc::ServerBidiReactor<v1::KeepAliveRequest,
                                     v1::KeepAliveResponse> {
 public:
  // With a non-OK `setup` (the caller could not be resolved), the stream
  // ends at once with it.
  KeepAliveReactor(Registry* registry, Metrics* metrics,
                   std::shared_ptr<ClientConnection> connection,
                   Identity caller, const absl::Status& setup);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  void Renew();

  Registry* const registry_;
  Metrics* const metrics_;
  const std::shared_ptr<ClientConnection> connection_;
  const Identity caller_;
  v1::KeepAliveRequest request_;
  v1::KeepAliveResponse response_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_KEEPALIVE_REACTOR_H_
