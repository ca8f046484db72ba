// Connection: the shared state behind a Client and its Buffers: the gRPC
// stub, the fd channel socket and session token, fds that arrived for grants
// not yet claimed, the mapped pooled arenas, and the LeaseKeeper that renews
// the leases (so leases are kept as long as any Buffer or the Client is alive).
// Internal to the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_CONNECTION_H_
#define SHMBROKER_CLIENT_SRC_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/src/arena_cache.h"
#include "client/src/lease_keeper.h"
#include "common/unique_fd.h"
#include "shmbroker/client.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker::client {

class Connection {
 public:
  static absl::StatusOr<std::shared_ptr<Connection>> Open(
      const ClientOptions& options);

  const std::string& socket_path() const { return socket_path_; }
  v1::Broker::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Adds the session token and the deadline to a call.
  void Prepare(grpc::ClientContext* ctx) const;
  // Adds the session token only (streams live on).
  void PrepareStream(grpc::ClientContext* ctx) const;
  // Converts a call's status, naming the socket when no daemon answers.
  absl::Status ToStatus(const grpc::Status& status) const;

  // The fd the daemon sent for `grant_id` (it is sent before the reply, so
  // it is normally already waiting). The caller owns the result.
  absl::StatusOr<UniqueFd> TakeFd(uint64_t grant_id);
  // Drops one hold under `lease` with a one-way fd-channel message; falls
  // back to the Release RPC if the channel cannot take it now. Does nothing
  // when the lease is lost (its holds are gone already).
  void ReleaseAsync(uint64_t handle, uint64_t lease);
  // Tells the daemon (one-way) that this client closed its fd of the arena;
  // false if the channel cannot take the message now.
  bool ForgetArena(uint64_t arena_id, bool writable);
  ArenaCache& arenas() { return arenas_; }
  // The Release RPC, by handle or (handle 0) by name.
  absl::StatusOr<uint32_t> ReleaseSync(uint64_t handle, const std::string& name,
                                       uint64_t lease);

  // The connection's default lease (0 without a session), and the keeper of
  // its leases (null without a session).
  uint64_t default_lease() const { return default_lease_; }
  LeaseKeeper* keeper() const { return keeper_.get(); }
  // OK, or why `lease` was lost.
  absl::Status LeaseStatus(uint64_t lease) const;

 private:
  Connection() = default;
  absl::Status Handshake();

  std::string socket_path_;
  absl::Duration timeout_;
  std::string token_hex_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
  UniqueFd fd_channel_;
  uint64_t default_lease_ = 0;
  // One-way frames (Release, ForgetArena) sent, for the daemon's ordering.
  std::atomic<uint64_t> frames_sent_{0};
  ArenaCache arenas_;

  absl::Mutex fd_mu_;
  absl::flat_hash_map<uint64_t, UniqueFd> unclaimed_ ABSL_GUARDED_BY(fd_mu_);

  // Last: stopped first, while the stub it uses still exists.
  std::unique_ptr<LeaseKeeper> keeper_;
};

// Value types from their wire forms.
BufferInfo FromProto(const v1::Buffer& buffer);
LeaseInfo FromProto(const v1::Lease& lease);
absl::Duration FromProto(const google::protobuf::Duration& duration);

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_CONNECTION_H_
