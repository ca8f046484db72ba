#include "server/broker_service.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fd_channel_protocol.h"
#include "core/limit.h"
#include "server/logging.h"
#include "server/proto_convert.h"

namespace shmbroker {
absl::StatusOr<BrokerService::Caller> BrokerService::Identify(
    grpc::CallbackServerContext* ctx, bool need_connection) {
  absl::StatusOr<Identity> identity = peers_->AdmitCall(ctx->peer());
  if (!identity.ok()) {
    // A refused connection's calls get its refusal (and its limit).
    if (identity.status().code() != absl::StatusCode::kNotFound) {
      return identity.status();
    }
    return absl::UnauthenticatedError(identity.status().message());
  }
  Caller caller{*identity, nullptr};
  const auto& metadata = ctx->client_metadata();
  auto token = metadata.find(fdchannel::kConnectionTokenKey);
  if (token == metadata.end()) {
    if (!need_connection) return caller;
    return absl::FailedPreconditionError(absl::StrCat(
        "no client connection: connect the fd channel and send its token as "
        "'",
        fdchannel::kConnectionTokenKey,
        "' metadata (the shmbroker client library does this)"));
  }
  caller.connection = fd_channel_->Find(
      std::string(token->second.data(), token->second.size()));
  if (caller.connection == nullptr) {
    return absl::UnauthenticatedError(
        "unknown or closed client connection: the token does not name an "
        "open fd channel");
  }
  // A token is good only in the hands of the process it was issued to.
  if (caller.connection->identity.pid != identity->pid) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: the client connection's token belongs to pid %d, "
        "not to the calling pid %d",
        caller.connection->identity.pid, identity->pid));
  }
  return caller;
}

absl::StatusOr<BrokerService::Caller> BrokerService::Begin(
    grpc::CallbackServerContext* ctx, bool need_connection) {
  absl::StatusOr<Caller> caller = Identify(ctx, need_connection);
  if (!caller.ok() || caller->connection == nullptr) return caller;
  const auto& metadata = ctx->client_metadata();
  std::optional<uint64_t> frames_sent;
  uint64_t value = 0;
  if (auto sent = metadata.find(fdchannel::kFramesSentKey);
      sent != metadata.end() &&
      absl::SimpleAtoi(
          absl::string_view(sent->second.data(), sent->second.size()),
          &value)) {
    frames_sent = value;
  }
  if (absl::Status s =
          fd_channel_->ApplyPending(*caller->connection, frames_sent);
      !s.ok()) {
    return s;
  }
  return caller;
}

absl::Status BrokerService::Deliver(ClientConnection& connection, Grant& grant,
                                    v1::Buffer* buffer, v1::Grant* out) {
  const BufferInfo& info = grant.buffer;
  absl::StatusOr<uint64_t> grant_id =
      info.kind == BufferKind::kPooled
          ? fd_channel_->SendArenaFd(
                connection, info.handle,
                {info.arena_id, grant.mode == AccessMode::kReadWrite},
                grant.fd_to_send())
          : fd_channel_->SendFd(connection, info.handle, grant.fd_to_send());
  if (!grant_id.ok()) {
    registry_
        ->Release(connection.id, BufferRef::ByHandle(info.handle), grant.lease)
        .IgnoreError();
    return grant_id.status();
  }
  ToProto(info, buffer);
  out->set_grant_id(*grant_id);
  out->set_mode(ToProto(grant.mode));
  out->set_offset(info.offset);
  out->set_segment_size(grant.memory->size());
  out->set_lease_id(grant.lease);
  return absl::OkStatus();
}

// Denials and internal errors are significant events and are logged; other
// errors are the caller's business and go back only to the caller. A client
// can cause either at will, so the lines are rate-limited
// (server/log_rate_limiter.h).
void BrokerService::Record(const char* method, const absl::Status& status,
                           absl::Time start) {
  metrics_->RpcDone(method, status.code(), absl::Now() - start);
  metrics_->CountRefusal(status);
  if (status.code() == absl::StatusCode::kPermissionDenied ||
      status.code() == absl::StatusCode::kInternal) {
    if (uint64_t suppressed = 0;
        LogRateLimits::ClientWarnings().Allow(&suppressed)) {
      spdlog::warn("{}: {}{}", method, status.ToString(),
                   SuppressedNote(suppressed));
    }
  }
}

absl::Status BrokerService::AllocateFor(ClientConnection& connection,
                                        const v1::AllocateRequest& request,
                                        v1::AllocateResponse* response) {
  absl::StatusOr<AllocateSpec> spec = FromProto(request);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<Grant> grant = registry_->Allocate(connection.id, *spec);
  if (!grant.ok()) return grant.status();
  return Deliver(connection, *grant, response->mutable_buffer(),
                 response->mutable_grant());
}

absl::Status BrokerService::AttachFor(ClientConnection& connection,
                                      const v1::AttachRequest& request,
                                      v1::AttachResponse* response) {
  absl::StatusOr<BufferRef> ref = TargetOf(request);
  if (!ref.ok()) return ref.status();
  absl::StatusOr<AccessRequest> mode = FromProto(request.mode());
  if (!mode.ok()) return mode.status();
  absl::StatusOr<Grant> grant =
      registry_->Attach(connection.id, *ref, *mode, request.lease_id());
  if (!grant.ok()) return grant.status();
  return Deliver(connection, *grant, response->mutable_buffer(),
                 response->mutable_grant());
}

grpc::ServerUnaryReactor* BrokerService::Ping(grpc::CallbackServerContext* ctx,
                                              const v1::PingRequest*,
                                              v1::PingResponse*) {
  // Nothing to do but what every call does: identify the caller (its
  // connection may be refused) and count it against --max_calls_per_second.
  return Finish(ctx, "Ping", [&] {
    return Identify(ctx, /*need_connection=*/false).status();
  });
}

grpc::ServerUnaryReactor* BrokerService::Allocate(
    grpc::CallbackServerContext* ctx, const v1::AllocateRequest* request,
    v1::AllocateResponse* response) {
  absl::StatusOr<absl::Duration> wait = RoomWait(*request);
  if (wait.ok() && *wait > absl::ZeroDuration()) {
    return AllocateWaiting(ctx, *request, *wait, response);
  }
  return Finish(ctx, "Allocate", [&]() -> absl::Status {
    if (!wait.ok()) return wait.status();
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
    if (!caller.ok()) return caller.status();
    return AllocateFor(*caller->connection, *request, response);
  });
}

grpc::ServerUnaryReactor* BrokerService::Attach(
    grpc::CallbackServerContext* ctx, const v1::AttachRequest* request,
    v1::AttachResponse* response) {
  if (request->wait() != v1::WAIT_FOR_NOTHING) {
    return AttachWaiting(ctx, *request, response);
  }
  return Finish(ctx, "Attach", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
    if (!caller.ok()) return caller.status();
    return AttachFor(*caller->connection, *request, response);
  });
}

grpc::ServerUnaryReactor* BrokerService::Release(
    grpc::CallbackServerContext* ctx, const v1::ReleaseRequest* request,
    v1::ReleaseResponse* response) {
  return Finish(ctx, "Release", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
    if (!caller.ok()) return caller.status();
    if ((request->handle() == 0) == request->name().empty()) {
      return absl::InvalidArgumentError(
          "no buffer named: set exactly one of handle and name");
    }
    const BufferRef ref = request->handle() != 0
                              ? BufferRef::ByHandle(request->handle())
                              : BufferRef::ByName(request->name());
    absl::StatusOr<uint32_t> left =
        registry_->Release(caller->connection->id, ref, request->lease_id());
    if (!left.ok()) return left.status();
    response->set_holders(*left);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerService::Describe(
    grpc::CallbackServerContext* ctx, const v1::DescribeRequest* request,
    v1::DescribeResponse* response) {
  return Finish(ctx, "Describe", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/false);
    if (!caller.ok()) return caller.status();
    absl::StatusOr<BufferRef> ref = TargetOf(*request);
    if (!ref.ok()) return ref.status();
    absl::StatusOr<BufferInfo> info =
        registry_->Describe(caller->identity, *ref);
    if (!info.ok()) return info.status();
    ToProto(*info, response->mutable_buffer());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerService::List(grpc::CallbackServerContext* ctx,
                                              const v1::ListRequest* request,
                                              v1::ListResponse* response) {
  return Finish(ctx, "List", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/false);
    if (!caller.ok()) return caller.status();
    absl::StatusOr<Page> wanted =
        ParsePage(request->page_size(), request->page_token(), options_.pages);
    if (!wanted.ok()) return wanted.status();
    bool more = false;
    uint64_t revision = 0;
    std::vector<BufferInfo> page = registry_->List(
        caller->identity, wanted->after, wanted->limit, &more, &revision);
    response->set_revision(revision);
    for (const BufferInfo& info : page) ToProto(info, response->add_buffers());
    if (!page.empty()) {
      response->set_next_page_token(NextPageToken(more, page.back().handle));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* BrokerService::Status(
    grpc::CallbackServerContext* ctx, const v1::StatusRequest*,
    v1::StatusResponse* response) {
  return Finish(ctx, "Status", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/false);
    if (!caller.ok()) return caller.status();
    std::vector<TenantUsage> tenants;
    ToProto(registry_->Stats(&tenants), response);
    ToProto(latencies_->connection_close.Summary(),
            response->mutable_connection_close_reclaim());
    ToProto(latencies_->lease_expiry.Summary(),
            response->mutable_lease_expiry_reclaim());
    response->set_version(options_.version);
    ToProto(options_.started, response->mutable_started());
    response->set_caller_uid(caller->identity.uid);
    response->set_caller_gid(caller->identity.gid);
    response->set_caller_pid(caller->identity.pid);
    response->set_caller_has_connection(caller->connection != nullptr);
    if (const PooledAllocator* pool = registry_->pool()) {
      ToProto(pool->Stats(), response->mutable_arenas());
      response->mutable_arenas()->set_pooled_max_size(
          pool->options().pooled_max_size);
      response->mutable_arenas()->set_pooled_large_max_size(pool->max_size());
    }
    for (const TenantUsage& tenant : tenants) {
      ToProto(tenant, response->add_tenants());
    }
    return absl::OkStatus();
  });
}

}  // namespace shmbroker
