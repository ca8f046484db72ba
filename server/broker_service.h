// BrokerService implements shmbroker.v1.Broker (callback API) on top of the
// core Registry. For each call it identifies the caller (the kernel identity
// of the gRPC connection, and the client connection its token names), applies
// the client's one-way fd-channel frames sent before the call, converts the
// request, calls the Registry, and pushes granted fds over the fd channel
// before replying (common/fd_channel_protocol.h has the ordering rules).
// It also serves the Allocate and Attach calls clients make on the fd
// channel (FdCallHandler), with the same request and response messages and
// the same checks. Buffer calls are in broker_service.cc, lease calls in
// broker_service_leases.cc, Seal and waiting Attach calls in
// broker_service_handoff.cc, Watch in broker_service_watch.cc, the fd
// channel's calls in broker_service_fd_calls.cc. Thread-safe: gRPC and the
// fd channel run calls concurrently.
#ifndef SHMBROKER_SERVER_BROKER_SERVICE_H_
#define SHMBROKER_SERVER_BROKER_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "server/client_connection.h"
#include "server/fd_channel.h"
#include "server/lease_sweeper.h"
#include "server/log_rate_limiter.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/page.h"
#include "server/peer_credentials.h"
#include "server/proto_convert.h"
#include "server/reclaim_latency.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker {

struct ServiceOptions {
  PageOptions pages;
  std::string version;
  absl::Time started;
};

class BrokerService final : public v1::Broker::CallbackService,
                            public FdCallHandler {
 public:
  // Pointers are not owned and must outlive the service.
  // `sweeper` ends waiting Attach calls at their deadline.
  BrokerService(Registry* registry, FdChannel* fd_channel, PeerTable* peers,
                Metrics* metrics, const ReclaimLatencies* latencies,
                LeaseSweeper* sweeper, ServiceOptions options)
      : registry_(registry),
        fd_channel_(fd_channel),
        peers_(peers),
        metrics_(metrics),
        latencies_(latencies),
        sweeper_(sweeper),
        options_(std::move(options)) {}

  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* ctx,
                                 const v1::PingRequest* request,
                                 v1::PingResponse* response) override;
  grpc::ServerUnaryReactor* Allocate(grpc::CallbackServerContext* ctx,
                                     const v1::AllocateRequest* request,
                                     v1::AllocateResponse* response) override;
  grpc::ServerUnaryReactor* Attach(grpc::CallbackServerContext* ctx,
                                   const v1::AttachRequest* request,
                                   v1::AttachResponse* response) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const v1::ReleaseRequest* request,
                                    v1::ReleaseResponse* response) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* ctx,
                                     const v1::DescribeRequest* request,
                                     v1::DescribeResponse* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const v1::ListRequest* request,
                                 v1::ListResponse* response) override;
  grpc::ServerUnaryReactor* Seal(grpc::CallbackServerContext* ctx,
                                 const v1::SealRequest* request,
                                 v1::SealResponse* response) override;
  // broker_service_watch.cc.
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* ctx,
      const v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const v1::StatusRequest* request,
                                   v1::StatusResponse* response) override;

  grpc::ServerUnaryReactor* GrantLease(
      grpc::CallbackServerContext* ctx, const v1::GrantLeaseRequest* request,
      v1::GrantLeaseResponse* response) override;
  grpc::ServerBidiReactor<v1::KeepAliveRequest, v1::KeepAliveResponse>*
  KeepAlive(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* RevokeLease(
      grpc::CallbackServerContext* ctx, const v1::RevokeLeaseRequest* request,
      v1::RevokeLeaseResponse* response) override;
  grpc::ServerUnaryReactor* LeaseTimeToLive(
      grpc::CallbackServerContext* ctx,
      const v1::LeaseTimeToLiveRequest* request,
      v1::LeaseTimeToLiveResponse* response) override;
  grpc::ServerUnaryReactor* ListLeases(
      grpc::CallbackServerContext* ctx, const v1::ListLeasesRequest* request,
      v1::ListLeasesResponse* response) override;
  grpc::ServerUnaryReactor* Resume(grpc::CallbackServerContext* ctx,
                                   const v1::ResumeRequest* request,
                                   v1::ResumeResponse* response) override;

  // An Allocate or Attach made on the fd channel (broker_service_fd_calls.cc).
  void OnCall(const std::shared_ptr<ClientConnection>& connection,
              fdchannel::Call call) override;

 private:
  template <typename Response>
  friend class WaitReactor;
  friend class WatchReactor;
  // What a waiting Attach waits for, checked.
  struct WaitSpec {
    AccessRequest access;
    WaitFor until = WaitFor::kExists;
    absl::Duration timeout;  // zero: until the call's deadline
  };
  struct Caller {
    Identity identity;
    // Null for calls without a connection token.
    std::shared_ptr<ClientConnection> connection;
  };
  // Runs `body`, records it, and finishes the call with its status.
  template <typename Body>
  grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx,
                                   const char* method, Body body);
  // Who is calling: the kernel identity of the gRPC connection, and the
  // client connection its token names (which must be the same process's).
  // FAILED_PRECONDITION without a token when `need_connection`.
  absl::StatusOr<Caller> Identify(grpc::CallbackServerContext* ctx,
                                  bool need_connection);
  // Identify, then apply the one-way frames the caller sent before this
  // call (common/fd_channel_protocol.h, rule 2): what every call that reads
  // or changes holds does first.
  absl::StatusOr<Caller> Begin(grpc::CallbackServerContext* ctx,
                               bool need_connection);
  // Sends the grant's fd and fills `out`; on failure drops the new hold.
  absl::Status Deliver(ClientConnection& connection, Grant& grant,
                       v1::Buffer* buffer, v1::Grant* out);
  // The bodies of Allocate and of an Attach that does not wait, after the
  // caller is known: for gRPC and fd-channel calls alike.
  absl::Status AllocateFor(ClientConnection& connection,
                           const v1::AllocateRequest& request,
                           v1::AllocateResponse* response);
  absl::Status AttachFor(ClientConnection& connection,
                         const v1::AttachRequest& request,
                         v1::AttachResponse* response);
  // A waiting Attach's request, checked (INVALID_ARGUMENT naming the field).
  static absl::StatusOr<WaitSpec> CheckWait(const v1::AttachRequest& request);
  // Counts a finished call in the metrics and logs it if it was denied or
  // failed inside (rate-limited: a client can cause either at will).
  void Record(const char* method, const absl::Status& status, absl::Time start);
  // An Attach that waits (broker_service_handoff.cc).
  grpc::ServerUnaryReactor* AttachWaiting(grpc::CallbackServerContext* ctx,
                                          const v1::AttachRequest& request,
                                          v1::AttachResponse* response);
  // How long an Allocate may wait for room (zero: not at all), checked.
  static absl::StatusOr<absl::Duration> RoomWait(
      const v1::AllocateRequest& request);
  // What answers fd-channel call `id` once a wait for its grant ends: the
  // grant's fd, then a Reply (broker_service_fd_calls.cc).
  template <typename Response>
  Registry::WaitDone AnswerLater(std::shared_ptr<ClientConnection> connection,
                                 uint64_t id, const char* method,
                                 absl::Time start);
  // Whether `now` is a wait (its deadline then wakes the sweeper); if not,
  // answers it at once through `finish`.
  bool WaitOrAnswer(absl::StatusOr<std::variant<Grant, WaiterId>> now,
                    const Registry::WaitDone& finish, absl::Time deadline);
  // An Allocate made on the fd channel, waiting for room or not.
  void OnAllocateCall(const std::shared_ptr<ClientConnection>& connection,
                      const fdchannel::Call& call, absl::Time start);
  // An Allocate that waits for room (broker_service_handoff.cc).
  grpc::ServerUnaryReactor* AllocateWaiting(grpc::CallbackServerContext* ctx,
                                            const v1::AllocateRequest& request,
                                            absl::Duration wait,
                                            v1::AllocateResponse* response);
  // Hangs up on connections whose default lease a call ended.
  void HangUpOn(const CloseResult& result, const std::string& why);

  Registry* const registry_;
  FdChannel* const fd_channel_;
  PeerTable* const peers_;
  Metrics* const metrics_;
  const ReclaimLatencies* const latencies_;
  LeaseSweeper* const sweeper_;
  const ServiceOptions options_;
};

template <typename Body>
grpc::ServerUnaryReactor* BrokerService::Finish(
    grpc::CallbackServerContext* ctx, const char* method, Body body) {
  const absl::Time start = absl::Now();
  absl::Status status = body();
  Record(method, status, start);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_BROKER_SERVICE_H_
