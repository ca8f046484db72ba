// Connection: the client's end of one client connection, shared by a Client
// and its Buffers (so the connection, and the leases kept on it, live while
// any of them does). It owns:
//  - the gRPC channel and stub, and Call(), which sends a call with the
//    connection's token, its count of one-way frames and the deadline, and
//    maps the status;
//  - the fd channel (FdChannel), absent when
//    ClientOptions::open_client_connection is off;
//  - the mapped pooled arenas (ArenaCache);
//  - the LeaseKeeper that renews the connection's leases.
// Internal to the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_CONNECTION_H_
#define SHMBROKER_CLIENT_SRC_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/src/arena_cache.h"
#include "client/src/fd_channel.h"
#include "client/src/lease_keeper.h"
#include "common/unique_fd.h"
#include "shmbroker/client.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker::client {

// A unary method of a generated gRPC stub, e.g. &v1::Broker::Stub::Allocate.
template <typename Stub, typename Request, typename Response>
using UnaryMethod = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&,
                                           Response*);

class Connection {
 public:
  static absl::StatusOr<std::shared_ptr<Connection>> Open(
      const ClientOptions& options);

  const std::string& socket_path() const { return socket_path_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  absl::Duration timeout() const { return timeout_; }

  // One unary call on `stub` (the Broker's by default). Errors are the
  // daemon's status, or UNAVAILABLE naming the socket when none answers.
  // `wait`: how much longer than the timeout the call may take (an Attach
  // that waits).
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(
      Stub& stub, UnaryMethod<Stub, Request, Response> method,
      const Request& request,
      absl::Duration wait = absl::ZeroDuration()) const {
    grpc::ClientContext ctx;
    Prepare(&ctx, wait);
    Response response;
    if (absl::Status s = ToStatus((stub.*method)(&ctx, request, &response));
        !s.ok()) {
      return s;
    }
    return response;
  }
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      UnaryMethod<v1::Broker::Stub, Request, Response> method,
      const Request& request,
      absl::Duration wait = absl::ZeroDuration()) const {
    return Call(*stub_, method, request, wait);
  }

  // The fd the daemon sent for `grant_id`, within the call timeout.
  absl::StatusOr<UniqueFd> TakeFd(uint64_t grant_id);
  // Drops one hold under `lease` with a one-way fd-channel message; falls
  // back to the Release RPC if the channel cannot take it now. Does nothing
  // when the lease is lost (its holds are gone already).
  void ReleaseAsync(uint64_t handle, uint64_t lease);
  // The Release RPC, by handle or (handle 0) by name.
  absl::StatusOr<uint32_t> ReleaseSync(uint64_t handle, const std::string& name,
                                       uint64_t lease);
  // Tells the daemon (one-way) that this client closed its fd of the arena;
  // false if the channel cannot take the message now.
  bool ForgetArena(uint64_t arena_id, bool writable);
  ArenaCache& arenas() { return arenas_; }

  // The connection's default lease (0 without a client connection), and
  // the keeper of its leases (null without one).
  uint64_t default_lease() const;
  LeaseKeeper* keeper() const { return keeper_.get(); }
  // OK, or why `lease` was lost.
  absl::Status LeaseStatus(uint64_t lease) const;

  // The token only: a KeepAlive or Watch stream lives on past any deadline.
  void PrepareStream(grpc::ClientContext* ctx) const;
  // A call's final status as the library reports it (see Call).
  absl::Status ToStatus(const grpc::Status& status) const;

 private:
  Connection() = default;
  // Adds the token and the one-way frame count (without them the daemon
  // sees a call from no client connection) and the deadline.
  void Prepare(grpc::ClientContext* ctx,
               absl::Duration wait = absl::ZeroDuration()) const;

  std::string socket_path_;
  absl::Duration timeout_;
  std::unique_ptr<FdChannel> fd_channel_;  // null: no client connection
  std::string token_hex_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
  ArenaCache arenas_;
  // Last: stopped first, while the stub it uses still exists.
  std::unique_ptr<LeaseKeeper> keeper_;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_CONNECTION_H_
