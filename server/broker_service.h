// BrokerService implements shmbroker.v1.Broker (callback API) on top of the
// core Registry. For each call it resolves who the caller is (kernel identity
// of the gRPC connection, plus the client connection named by the session
// token, which must belong to the same process), applies the client's pending
// fd-channel frames first so one-way releases are ordered before the call,
// and pushes granted fds over the fd channel before replying. Buffer calls
// are in broker_service.cc, lease calls in broker_service_leases.cc.
#ifndef SHMBROKER_SERVER_BROKER_SERVICE_H_
#define SHMBROKER_SERVER_BROKER_SERVICE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "server/fd_channel.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/peer_credentials.h"
#include "server/proto_convert.h"
#include "server/reclaim_latency.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker {

struct ServiceOptions {
  uint32_t list_default_page_size = 100;
  uint32_t list_max_page_size = 1000;
  uint32_t keepalive_max_per_second = 1000;
  std::string version;
  absl::Time started;
};

class BrokerService final : public v1::Broker::CallbackService {
 public:
  // Pointers are not owned and must outlive the service.
  BrokerService(Registry* registry, FdChannel* fd_channel, PeerTable* peers,
                Metrics* metrics, const ReclaimLatencies* latencies,
                ServiceOptions options)
      : registry_(registry),
        fd_channel_(fd_channel),
        peers_(peers),
        metrics_(metrics),
        latencies_(latencies),
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

 private:
  struct Caller {
    Identity identity;
    std::shared_ptr<Session> session;  // null for calls without a token
  };
  // Runs `body`, records it, and finishes the call with its status.
  template <typename Body>
  grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx,
                                   const char* method, Body body);
  absl::StatusOr<Caller> Resolve(grpc::CallbackServerContext* ctx,
                                 bool need_session);
  // Sends the grant's fd and fills `out`; on failure drops the new hold.
  absl::Status Deliver(Session& session, Grant& grant, v1::Buffer* buffer,
                       v1::Grant* out);

  absl::Status DoAllocate(grpc::CallbackServerContext* ctx,
                          const v1::AllocateRequest& request,
                          v1::AllocateResponse* response);
  absl::Status DoAttach(grpc::CallbackServerContext* ctx,
                        const v1::AttachRequest& request,
                        v1::AttachResponse* response);
  absl::Status DoRelease(grpc::CallbackServerContext* ctx,
                         const v1::ReleaseRequest& request,
                         v1::ReleaseResponse* response);
  absl::Status DoDescribe(grpc::CallbackServerContext* ctx,
                          const v1::DescribeRequest& request,
                          v1::DescribeResponse* response);
  absl::Status DoList(grpc::CallbackServerContext* ctx,
                      const v1::ListRequest& request,
                      v1::ListResponse* response);
  absl::Status DoStatus(grpc::CallbackServerContext* ctx,
                        v1::StatusResponse* response);
  absl::Status DoGrantLease(grpc::CallbackServerContext* ctx,
                            const v1::GrantLeaseRequest& request,
                            v1::GrantLeaseResponse* response);
  absl::Status DoRevokeLease(grpc::CallbackServerContext* ctx,
                             const v1::RevokeLeaseRequest& request,
                             v1::RevokeLeaseResponse* response);
  absl::Status DoLeaseTimeToLive(grpc::CallbackServerContext* ctx,
                                 const v1::LeaseTimeToLiveRequest& request,
                                 v1::LeaseTimeToLiveResponse* response);
  absl::Status DoListLeases(grpc::CallbackServerContext* ctx,
                            const v1::ListLeasesRequest& request,
                            v1::ListLeasesResponse* response);
  // A page of List or ListLeases: after the id in `token`, at most `size`
  // (0: the default; capped at the maximum).
  struct Page {
    uint64_t after = 0;
    uint32_t limit = 0;
  };
  absl::StatusOr<Page> ParsePage(uint32_t size, const std::string& token) const;
  // Hangs up on connections whose default lease a call ended.
  void HangUpOn(const CloseResult& result, const std::string& why);

  Registry* const registry_;
  FdChannel* const fd_channel_;
  PeerTable* const peers_;
  Metrics* const metrics_;
  const ReclaimLatencies* const latencies_;
  const ServiceOptions options_;
};

// Denials and internal errors are significant events and are logged; other
// errors are the caller's business and go back only to the caller.
template <typename Body>
grpc::ServerUnaryReactor* BrokerService::Finish(
    grpc::CallbackServerContext* ctx, const char* method, Body body) {
  const absl::Time start = absl::Now();
  absl::Status status = body();
  metrics_->RpcDone(method, status.code(), absl::Now() - start);
  if (status.code() == absl::StatusCode::kPermissionDenied ||
      status.code() == absl::StatusCode::kInternal) {
    spdlog::warn("{}: {}", method, status.ToString());
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_BROKER_SERVICE_H_
