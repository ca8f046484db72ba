// BrokerService: the lease calls (GrantLease, KeepAlive, RevokeLease,
// LeaseTimeToLive, ListLeases) and Resume, which takes leases back after a
// restart. Buffer calls are in broker_service.cc.
#include "absl/strings/str_cat.h"
#include "server/broker_service.h"
#include "server/keepalive_reactor.h"

namespace shmbroker {

grpc::ServerUnaryReactor* BrokerService::GrantLease(
    grpc::CallbackServerContext* ctx, const v1::GrantLeaseRequest* request,
    v1::GrantLeaseResponse* response) {
  return Finish(ctx, "GrantLease", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
    if (!caller.ok()) return caller.status();
    absl::StatusOr<absl::Duration> ttl = FromProto(request->ttl());
    if (!ttl.ok()) return ttl.status();
    absl::StatusOr<LeaseInfo> lease = registry_->GrantLease(
        caller->connection->id, *ttl, request->detached());
    if (!lease.ok()) return lease.status();
    ToProto(*lease, absl::Now(), response->mutable_lease());
    return absl::OkStatus();
  });
}

grpc::ServerBidiReactor<v1::KeepAliveRequest, v1::KeepAliveResponse>*
BrokerService::KeepAlive(grpc::CallbackServerContext* ctx) {
  absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
  // gRPC's callback API owns reactors by raw pointer: each deletes itself in
  // OnDone.
  return new KeepAliveReactor(
      registry_, metrics_, caller.ok() ? caller->connection : nullptr,
      caller.ok() ? caller->identity : Identity{}, caller.status());
}

grpc::ServerUnaryReactor* BrokerService::RevokeLease(
    grpc::CallbackServerContext* ctx, const v1::RevokeLeaseRequest* request,
    v1::RevokeLeaseResponse* response) {
  return Finish(ctx, "RevokeLease", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/false);
    if (!caller.ok()) return caller.status();
    if (request->lease_id() == 0) {
      return absl::InvalidArgumentError("bad lease id: 0");
    }
    absl::StatusOr<CloseResult> result =
        registry_->RevokeLease(caller->identity, request->lease_id());
    if (!result.ok()) return result.status();
    HangUpOn(*result, absl::StrCat("its default lease ", request->lease_id(),
                                   " was revoked by pid ", caller->identity.pid,
                                   " uid ", caller->identity.uid));
    spdlog::info("lease {} revoked by pid {} uid {}: reclaimed {} buffers",
                 request->lease_id(), caller->identity.pid,
                 caller->identity.uid, result->buffers_reclaimed);
    response->set_holds_dropped(result->holds_dropped);
    response->set_buffers_reclaimed(result->buffers_reclaimed);
    response->set_bytes_reclaimed(result->bytes_reclaimed);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerService::Resume(
    grpc::CallbackServerContext* ctx, const v1::ResumeRequest* request,
    v1::ResumeResponse* response) {
  return Finish(ctx, "Resume", [&]() -> absl::Status {
    // Begin applies the Present frames sent before this call (rule 2).
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
    if (!caller.ok()) return caller.status();
    const std::vector<LeaseId> leases(request->lease_ids().begin(),
                                      request->lease_ids().end());
    const std::vector<Handle> handles(request->handles().begin(),
                                      request->handles().end());
    ResumeResult result =
        registry_->Resume(caller->connection->id, leases, handles);
    const absl::Time now = absl::Now();
    size_t leases_ok = 0;
    size_t buffers_ok = 0;
    for (const auto& [id, lease] : result.leases) {
      v1::ResumedLease* out = response->add_leases();
      out->set_lease_id(id);
      if (lease.ok()) {
        ++leases_ok;
        ToProto(*lease, now, out->mutable_lease());
      } else {
        out->set_error_code(static_cast<int>(lease.status().code()));
        out->set_error_message(std::string(lease.status().message()));
      }
    }
    for (const auto& [handle, status] : result.buffers) {
      v1::ResumedBuffer* out = response->add_buffers();
      out->set_handle(handle);
      if (status.ok()) {
        ++buffers_ok;
      } else {
        out->set_error_code(static_cast<int>(status.code()));
        out->set_error_message(std::string(status.message()));
      }
    }
    spdlog::info(
        "client connection {} (pid {} uid {}) resumed {} of {} leases and "
        "{} of {} buffers",
        caller->connection->id, caller->identity.pid, caller->identity.uid,
        leases_ok, leases.size(), buffers_ok, handles.size());
    return absl::OkStatus();
  });
}

void BrokerService::HangUpOn(const CloseResult& result,
                             const std::string& why) {
  for (ConnectionId id : result.connections_closed) {
    fd_channel_->Hangup(id, why);
  }
}

grpc::ServerUnaryReactor* BrokerService::LeaseTimeToLive(
    grpc::CallbackServerContext* ctx, const v1::LeaseTimeToLiveRequest* request,
    v1::LeaseTimeToLiveResponse* response) {
  return Finish(ctx, "LeaseTimeToLive", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/false);
    if (!caller.ok()) return caller.status();
    const ConnectionId connection =
        caller->connection != nullptr ? caller->connection->id : 0;
    absl::StatusOr<LeaseDetail> detail = registry_->LeaseTimeToLive(
        caller->identity, connection, request->lease_id());
    if (!detail.ok()) return detail.status();
    ToProto(detail->info, absl::Now(), response->mutable_lease());
    for (const auto& [handle, count] : detail->holds) {
      v1::LeaseHold* hold = response->add_holds();
      hold->set_handle(handle);
      hold->set_count(count);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerService::ListLeases(
    grpc::CallbackServerContext* ctx, const v1::ListLeasesRequest* request,
    v1::ListLeasesResponse* response) {
  return Finish(ctx, "ListLeases", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/false);
    if (!caller.ok()) return caller.status();
    absl::StatusOr<Page> wanted =
        ParsePage(request->page_size(), request->page_token(), options_.pages);
    if (!wanted.ok()) return wanted.status();
    bool more = false;
    std::vector<LeaseInfo> page = registry_->ListLeases(
        caller->identity, wanted->after, wanted->limit, &more);
    const absl::Time now = absl::Now();
    for (const LeaseInfo& info : page) {
      ToProto(info, now, response->add_leases());
    }
    if (!page.empty()) {
      response->set_next_page_token(NextPageToken(more, page.back().id));
    }
    return absl::OkStatus();
  });
}

}  // namespace shmbroker
