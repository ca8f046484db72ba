// Grants: turns the daemon's grants (its replies to Allocate and Attach)
// into mapped Buffers. A grant names the fd that came for it on the fd
// channel (rule 1 of common/fd_channel_protocol.h), or none for a pooled
// buffer whose arena this client connection has mapped already (rule 3).
//
// The ArenaCache's grants_mu is held shared from sending a call until its
// arena is found, never across two calls. When the daemon believes this
// connection has an arena's fd but it does not (an earlier grant carried it
// and failed here, e.g. that call timed out, or mapping the arena failed),
// the daemon is told to forget the arena and the buffer is attached once
// more, which brings the fd; the first hold is dropped after the second is
// taken, so the buffer never loses its last holder in between.
//
// On error, the hold a grant took is given back (one-way) before returning.
// Internal to the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_GRANTS_H_
#define SHMBROKER_CLIENT_SRC_GRANTS_H_

#include <memory>
#include <variant>

#include "absl/status/statusor.h"
#include "client/src/connection.h"
#include "shmbroker/buffer.h"
#include "shmbroker/v1/broker.pb.h"

namespace shmbroker::client {

class Grants {
 public:
  // `wait`: how long the daemon may wait for room (request.wait_for_room).
  static absl::StatusOr<Buffer> Allocate(
      const std::shared_ptr<Connection>& connection,
      const v1::AllocateRequest& request,
      absl::Duration wait = absl::ZeroDuration());
  // `wait`: how long the daemon may wait for the buffer (request.wait).
  static absl::StatusOr<Buffer> Attach(
      const std::shared_ptr<Connection>& connection,
      const v1::AttachRequest& request,
      absl::Duration wait = absl::ZeroDuration());

 private:
  // A pooled grant without an fd, in an arena this process has not mapped.
  struct ArenaFdMissing {
    uint64_t handle = 0;
    uint64_t lease = 0;
    v1::AccessMode mode = v1::ACCESS_MODE_UNSPECIFIED;
    uint64_t arena_id = 0;
  };
  using Outcome = std::variant<Buffer, ArenaFdMissing>;

  // Sends the call (on the fd channel as `fd_method` if it can, else over
  // gRPC) and claims its grant, under grants_mu (shared).
  template <typename Request, typename Response>
  static absl::StatusOr<Outcome> Send(
      const std::shared_ptr<Connection>& connection,
      UnaryMethod<v1::Broker::Stub, Request, Response> method,
      fdchannel::CallMethod fd_method, const Request& request,
      const char* pause_point, absl::Duration wait = absl::ZeroDuration());
  // What Send gave, after fetching a missing arena fd once.
  static absl::StatusOr<Buffer> Finish(
      const std::shared_ptr<Connection>& connection,
      absl::StatusOr<Outcome> outcome);
  static absl::StatusOr<Outcome> Claim(
      const std::shared_ptr<Connection>& connection, const v1::Buffer& info,
      const v1::Grant& grant);
  static absl::StatusOr<Outcome> ClaimPooled(
      const std::shared_ptr<Connection>& connection, const v1::Buffer& info,
      const v1::Grant& grant);
  // Gives the hold back and says why the buffer cannot be mapped.
  static absl::Status GiveUp(Connection& connection,
                             const ArenaFdMissing& missing);
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_GRANTS_H_
