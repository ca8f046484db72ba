// Connection: the client's end of one client connection, shared by a Client
// and its Buffers (so the connection, and the leases kept on it, live while
// any of them does). Everything the connection holds is declared here:
//  - FdChannel (client/src/fd_channel.h), the fd channel's socket.
//    Connecting it opens this process's client connection in the daemon,
//    and its closing (exit, crash, SIGKILL) ends it. It reads the daemon's
//    Hello, keeps the fds that arrive for grants until their calls claim
//    them (rule 1), and sends the one-way frames, counting them for the
//    calls' metadata (rule 2). Absent when
//    ClientOptions::open_client_connection is off.
//  - the gRPC channel and stub, and Call(), which sends a call with the
//    connection's token, its count of one-way frames and the deadline, and
//    maps the status;
//  - ArenaCache, the mapped pooled arenas (docs/api.md, "Pooled buffers").
//    The daemon sends an arena's fd to a connection once (rule 3); the
//    client maps the whole arena once and every pooled Buffer in it points
//    into that mapping, which lives while the cache or any such Buffer
//    holds it. Trim() drops arenas no Buffer uses and tells the daemon (one
//    kForgetArena frame each) so that it sends the fd again when needed.
//  - the LeaseKeeper that renews the connection's leases;
//  - the HoldTable of its live Buffers, and the Resumer that takes them and
//    the leases back after the daemon restarts (docs/api.md, "Restart").
//    A resume replaces the FdChannel (and with it the token) with the new
//    daemon's: it is a shared_ptr read under a mutex, so each call or
//    one-way frame uses one channel throughout, the old one or the new.
// Internal to the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_CONNECTION_H_
#define SHMBROKER_CLIENT_SRC_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/src/fd_channel.h"
#include "client/src/hold_table.h"
#include "client/src/lease_keeper.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"
#include "shmbroker/client.h"
#include "shmbroker/mapping.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker::client {

// One arena's fd and its mapping in this process.
class ArenaMapping {
 public:
  ArenaMapping(uint64_t id, UniqueFd fd, Mapping mapping)
      : id_(id), fd_(std::move(fd)), mapping_(std::move(mapping)) {}
  uint64_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  const Mapping& mapping() const { return mapping_; }

 private:
  const uint64_t id_;
  const UniqueFd fd_;
  const Mapping mapping_;
};

class ArenaCache {
 public:
  // Held shared from sending a request that may grant a pooled buffer until
  // its arena is found or adopted, and exclusively by Trim: so the daemon is
  // never told to forget an arena while a grant in it is on its way.
  absl::Mutex& grants_mu() ABSL_LOCK_RETURNED(grants_mu_) { return grants_mu_; }

  // The cached mapping of `arena_id` (writable or read-only), or null.
  std::shared_ptr<const ArenaMapping> Find(uint64_t arena_id, bool writable);
  // Maps `size` bytes of `fd` and caches them. If the arena is cached
  // already (two grants raced), keeps that one and closes `fd`.
  absl::StatusOr<std::shared_ptr<const ArenaMapping>> Adopt(uint64_t arena_id,
                                                            bool writable,
                                                            UniqueFd fd,
                                                            uint64_t size);
  // Drops every arena no Buffer uses, after `forget(arena_id, writable)`
  // (null: drop without telling anyone)
  // accepts telling the daemon; returns how many were dropped.
  size_t Trim(const std::function<bool(uint64_t, bool)>& forget);
  // How many arenas are mapped.
  size_t size() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  static uint64_t Key(uint64_t arena_id, bool writable) {
    return arena_id * 2 + (writable ? 1 : 0);
  }

  absl::Mutex grants_mu_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const ArenaMapping>> arenas_
      ABSL_GUARDED_BY(mu_);
};

// A unary method of a generated gRPC stub, e.g. &v1::Broker::Stub::Allocate.
template <typename Stub, typename Request, typename Response>
using UnaryMethod = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&,
                                           Response*);

class Resumer;

class Connection {
 public:
  static absl::StatusOr<std::shared_ptr<Connection>> Open(
      const ClientOptions& options);
  ~Connection();

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

  // Allocate or Attach (`method`) as a call on the fd channel, answered as
  // Call answers it over gRPC; `wait` as for Call. Nullopt when it must go
  // over gRPC instead: no fd channel, a daemon that does not serve calls,
  // ClientOptions::calls_on_fd_channel is off, or the request does not fit
  // in one message.
  template <typename Response, typename Request>
  std::optional<absl::StatusOr<Response>> CallOnFdChannel(
      fdchannel::CallMethod method, const Request& request,
      absl::Duration wait = absl::ZeroDuration()) const {
    std::shared_ptr<FdChannel> channel = fd_channel();
    // An older daemon does not serve calls (its Hello says so).
    if (!calls_on_fd_channel_ || channel == nullptr ||
        !channel->hello().Serves(fdchannel::kFeatureCalls)) {
      return std::nullopt;
    }
    fdchannel::Call call;
    call.method = method;
    if (!request.SerializeToString(&call.payload) ||
        call.payload.size() > fdchannel::kMaxPayloadBytes) {
      return std::nullopt;
    }
    const absl::Duration timeout = timeout_ + wait;
    call.timeout_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(timeout));
    absl::StatusOr<fdchannel::Reply> reply =
        channel->Call(std::move(call), absl::Now() + timeout);
    if (!reply.ok()) return FdChannelStatus(reply.status());
    if (reply->code != absl::StatusCode::kOk) {
      return FdChannel::StatusOf(*reply);
    }
    Response response;
    if (!response.ParseFromString(reply->payload)) {
      return absl::InternalError(
          "malformed response from the daemon on the fd channel");
    }
    return response;
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
  // Seals `handle` with a one-way frame that the daemon applies before this
  // client's next call (rule 2 of common/fd_channel_protocol.h); false if
  // the channel cannot take it now (then use the Seal RPC). Only for a seal
  // that cannot fail: a pooled buffer held writable.
  bool SealAsync(uint64_t handle);
  // Tells the daemon (one-way) that this client closed its fd of the arena;
  // false if the channel cannot take the message now.
  bool ForgetArena(uint64_t arena_id, bool writable);
  ArenaCache& arenas() { return arenas_; }
  // Trims the arena cache (forgetting each dropped arena in the daemon)
  // once it maps more than kMaxIdleArenas arenas: large buffers each get an
  // arena of their own (docs/api.md, "Pooled buffers"), and a process that
  // goes through many sizes would otherwise keep a mapping and an fd of
  // each for ever. Call without grants_mu held; returns how many it
  // dropped.
  static constexpr size_t kMaxIdleArenas = 32;
  size_t TrimArenas(bool only_if_many);

  // The connection's default lease (0 without a client connection), and
  // the keeper of its leases (null without one). After a resume, the new
  // connection's default lease.
  uint64_t default_lease() const;
  LeaseKeeper* keeper() const { return keeper_.get(); }
  // The fd channel in use (null without a client connection).
  std::shared_ptr<FdChannel> fd_channel() const ABSL_LOCKS_EXCLUDED(mu_);
  HoldTable& holds() { return holds_; }
  v1::Broker::Stub& stub() const { return *stub_; }

  // For the Resumer. While the daemon is away, releases are kept and sent
  // once the connection is resumed.
  void SetDaemonAway(bool away) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops the cached arenas no Buffer uses (without ForgetArena: the new
  // channel never received them), then makes `channel` the one in use.
  void SwapFdChannel(std::shared_ptr<FdChannel> channel)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The releases kept while the daemon was away.
  std::vector<fdchannel::Release> TakePendingReleases()
      ABSL_LOCKS_EXCLUDED(mu_);
  // Prepare with `channel`'s token and frame count.
  void PrepareOn(const FdChannel* channel, grpc::ClientContext* ctx,
                 absl::Duration wait = absl::ZeroDuration()) const;
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

  // A failure of the fd channel itself as the library reports it: as
  // ToStatus words an unreachable daemon.
  absl::Status FdChannelStatus(const absl::Status& status) const;
  // Makes `channel` give back the hold of a grant whose call stopped
  // waiting for it (FdChannel::SetOrphanHandler).
  static void AdoptOrphans(FdChannel& channel);

  // Keeps a release for after the resume; false if nothing will resume.
  bool KeepForResume(uint64_t handle, uint64_t lease) ABSL_LOCKS_EXCLUDED(mu_);

  std::string socket_path_;
  absl::Duration timeout_;
  bool resume_ = false;  // resume_after_restart, with a client connection
  bool calls_on_fd_channel_ = true;
  mutable absl::Mutex mu_;
  std::shared_ptr<FdChannel> fd_channel_ ABSL_GUARDED_BY(mu_);  // null: none
  bool daemon_away_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<fdchannel::Release> pending_releases_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
  ArenaCache arenas_;
  HoldTable holds_;
  // Last: stopped first, while the stub they use still exists; the Resumer
  // before the keeper it pauses.
  std::unique_ptr<LeaseKeeper> keeper_;
  std::unique_ptr<Resumer> resumer_;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_CONNECTION_H_
