#include "server/broker_service.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fd_channel_protocol.h"
#include "server/logging.h"
#include "server/proto_convert.h"

namespace shmbroker {
namespace {

template <typename Request>
absl::StatusOr<BufferRef> TargetOf(const Request& request) {
  switch (request.target_case()) {
    case Request::kHandle:
      if (request.handle() == 0) {
        return absl::InvalidArgumentError("bad handle: 0");
      }
      return BufferRef::ByHandle(request.handle());
    case Request::kName:
      return BufferRef::ByName(request.name());
    default:
      return absl::InvalidArgumentError(
          "no buffer named: set either handle or name");
  }
}

}  // namespace

absl::StatusOr<BrokerService::Caller> BrokerService::Resolve(
    grpc::CallbackServerContext* ctx, bool need_session) {
  absl::StatusOr<Identity> identity = peers_->Lookup(ctx->peer());
  if (!identity.ok())
    return absl::UnauthenticatedError(identity.status().message());
  Caller caller{*identity, nullptr};
  const auto& metadata = ctx->client_metadata();
  auto token = metadata.find(fdchannel::kSessionMetadataKey);
  if (token != metadata.end()) {
    std::string hex(token->second.data(), token->second.size());
    caller.session = fd_channel_->Find(hex);
    if (caller.session == nullptr) {
      return absl::UnauthenticatedError(
          "unknown or closed client connection: the session token does not "
          "name an open fd channel");
    }
    // A token is good only in the hands of the process it was issued to.
    if (caller.session->identity.pid != identity->pid) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "permission denied: the session token belongs to pid %d, not to "
          "the calling pid %d",
          caller.session->identity.pid, identity->pid));
    }
    std::optional<uint64_t> releases_sent;
    auto sent = metadata.find(fdchannel::kReleasesSentMetadataKey);
    uint64_t value = 0;
    if (sent != metadata.end() &&
        absl::SimpleAtoi(
            absl::string_view(sent->second.data(), sent->second.size()),
            &value)) {
      releases_sent = value;
    }
    if (absl::Status s =
            fd_channel_->DrainIfBehind(*caller.session, releases_sent);
        !s.ok()) {
      return s;
    }
  } else if (need_session) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no client connection: connect the fd channel and send its token as "
        "'",
        fdchannel::kSessionMetadataKey,
        "' metadata (the shmbroker client library does this)"));
  }
  return caller;
}

absl::Status BrokerService::Deliver(Session& session, Grant& grant,
                                    v1::Buffer* buffer, v1::Grant* out) {
  const bool pooled = grant.buffer.kind == BufferKind::kPooled;
  absl::StatusOr<uint64_t> grant_id =
      pooled ? fd_channel_->SendArenaFd(
                   session, grant.buffer.handle, grant.buffer.arena_id,
                   grant.mode == AccessMode::kReadWrite, grant.fd_to_send())
             : fd_channel_->SendFd(session, grant.buffer.handle,
                                   grant.fd_to_send());
  if (!grant_id.ok()) {
    registry_->Release(session.client, grant.buffer.handle).IgnoreError();
    return grant_id.status();
  }
  ToProto(grant.buffer, buffer);
  out->set_grant_id(*grant_id);
  out->set_mode(ToProto(grant.mode));
  out->set_offset(grant.buffer.offset);
  out->set_segment_size(grant.memory->size());
  out->set_lease_id(grant.lease);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* BrokerService::Ping(grpc::CallbackServerContext* ctx,
                                              const v1::PingRequest*,
                                              v1::PingResponse*) {
  return Finish(ctx, "Ping", [] { return absl::OkStatus(); });
}

grpc::ServerUnaryReactor* BrokerService::Allocate(
    grpc::CallbackServerContext* ctx, const v1::AllocateRequest* request,
    v1::AllocateResponse* response) {
  return Finish(ctx, "Allocate",
                [&] { return DoAllocate(ctx, *request, response); });
}

grpc::ServerUnaryReactor* BrokerService::Attach(
    grpc::CallbackServerContext* ctx, const v1::AttachRequest* request,
    v1::AttachResponse* response) {
  return Finish(ctx, "Attach",
                [&] { return DoAttach(ctx, *request, response); });
}

grpc::ServerUnaryReactor* BrokerService::Release(
    grpc::CallbackServerContext* ctx, const v1::ReleaseRequest* request,
    v1::ReleaseResponse* response) {
  return Finish(ctx, "Release",
                [&] { return DoRelease(ctx, *request, response); });
}

grpc::ServerUnaryReactor* BrokerService::Describe(
    grpc::CallbackServerContext* ctx, const v1::DescribeRequest* request,
    v1::DescribeResponse* response) {
  return Finish(ctx, "Describe",
                [&] { return DoDescribe(ctx, *request, response); });
}

grpc::ServerUnaryReactor* BrokerService::List(grpc::CallbackServerContext* ctx,
                                              const v1::ListRequest* request,
                                              v1::ListResponse* response) {
  return Finish(ctx, "List", [&] { return DoList(ctx, *request, response); });
}

grpc::ServerUnaryReactor* BrokerService::Status(
    grpc::CallbackServerContext* ctx, const v1::StatusRequest*,
    v1::StatusResponse* response) {
  return Finish(ctx, "Status", [&] { return DoStatus(ctx, response); });
}

absl::Status BrokerService::DoAllocate(grpc::CallbackServerContext* ctx,
                                       const v1::AllocateRequest& request,
                                       v1::AllocateResponse* response) {
  absl::StatusOr<Caller> caller = Resolve(ctx, /*need_session=*/true);
  if (!caller.ok()) return caller.status();
  AllocateSpec spec;
  spec.size = request.size();
  spec.name = request.name();
  absl::StatusOr<Backing> backing = FromProto(request.backing());
  if (!backing.ok()) return backing.status();
  spec.backing = *backing;
  absl::StatusOr<std::vector<ShareRule>> share = FromProto(request.share());
  if (!share.ok()) return share.status();
  spec.share = std::move(*share);
  spec.lease = request.lease_id();
  absl::StatusOr<std::optional<BufferKind>> kind = FromProto(request.kind());
  if (!kind.ok()) return kind.status();
  spec.kind = *kind;
  spec.zeroed = !request.uninitialized();
  absl::StatusOr<Grant> grant =
      registry_->Allocate(caller->session->client, spec);
  if (!grant.ok()) return grant.status();
  return Deliver(*caller->session, *grant, response->mutable_buffer(),
                 response->mutable_grant());
}

absl::Status BrokerService::DoAttach(grpc::CallbackServerContext* ctx,
                                     const v1::AttachRequest& request,
                                     v1::AttachResponse* response) {
  absl::StatusOr<Caller> caller = Resolve(ctx, /*need_session=*/true);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<BufferRef> ref = TargetOf(request);
  if (!ref.ok()) return ref.status();
  absl::StatusOr<AccessRequest> mode = FromProto(request.mode());
  if (!mode.ok()) return mode.status();
  absl::StatusOr<Grant> grant = registry_->Attach(caller->session->client, *ref,
                                                  *mode, request.lease_id());
  if (!grant.ok()) return grant.status();
  return Deliver(*caller->session, *grant, response->mutable_buffer(),
                 response->mutable_grant());
}

absl::Status BrokerService::DoRelease(grpc::CallbackServerContext* ctx,
                                      const v1::ReleaseRequest& request,
                                      v1::ReleaseResponse* response) {
  absl::StatusOr<Caller> caller = Resolve(ctx, /*need_session=*/true);
  if (!caller.ok()) return caller.status();
  if ((request.handle() == 0) == request.name().empty()) {
    return absl::InvalidArgumentError(
        "no buffer named: set exactly one of handle and name");
  }
  const BufferRef ref = request.handle() != 0
                            ? BufferRef::ByHandle(request.handle())
                            : BufferRef::ByName(request.name());
  absl::StatusOr<uint32_t> left =
      registry_->Release(caller->session->client, ref, request.lease_id());
  if (!left.ok()) return left.status();
  response->set_holders(*left);
  return absl::OkStatus();
}

absl::Status BrokerService::DoDescribe(grpc::CallbackServerContext* ctx,
                                       const v1::DescribeRequest& request,
                                       v1::DescribeResponse* response) {
  absl::StatusOr<Caller> caller = Resolve(ctx, /*need_session=*/false);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<BufferRef> ref = TargetOf(request);
  if (!ref.ok()) return ref.status();
  absl::StatusOr<BufferInfo> info = registry_->Describe(caller->identity, *ref);
  if (!info.ok()) return info.status();
  ToProto(*info, response->mutable_buffer());
  return absl::OkStatus();
}

absl::StatusOr<BrokerService::Page> BrokerService::ParsePage(
    uint32_t size, const std::string& token) const {
  Page page;
  if (!token.empty() && !absl::SimpleAtoi(token, &page.after)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad page_token \"", token,
                     "\": pass next_page_token from the previous page"));
  }
  page.limit = std::min(size == 0 ? options_.list_default_page_size : size,
                        options_.list_max_page_size);
  return page;
}

absl::Status BrokerService::DoList(grpc::CallbackServerContext* ctx,
                                   const v1::ListRequest& request,
                                   v1::ListResponse* response) {
  absl::StatusOr<Caller> caller = Resolve(ctx, /*need_session=*/false);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<Page> wanted =
      ParsePage(request.page_size(), request.page_token());
  if (!wanted.ok()) return wanted.status();
  bool more = false;
  std::vector<BufferInfo> page =
      registry_->List(caller->identity, wanted->after, wanted->limit, &more);
  for (const BufferInfo& info : page) ToProto(info, response->add_buffers());
  if (more && !page.empty()) {
    response->set_next_page_token(absl::StrCat(page.back().handle));
  }
  return absl::OkStatus();
}

absl::Status BrokerService::DoStatus(grpc::CallbackServerContext* ctx,
                                     v1::StatusResponse* response) {
  absl::StatusOr<Caller> caller = Resolve(ctx, /*need_session=*/false);
  if (!caller.ok()) return caller.status();
  RegistryStats stats = registry_->Stats();
  response->set_capacity_bytes(stats.capacity_bytes);
  response->set_allocated_bytes(stats.allocated_bytes);
  response->set_committed_bytes(stats.committed_bytes);
  response->set_buffers(stats.buffers);
  response->set_clients(stats.clients);
  response->set_holds(stats.holds);
  response->set_leases(stats.leases);
  response->set_detached_leases(stats.detached_leases);
  ToProto(latencies_->connection_close.Summary(),
          response->mutable_connection_close_reclaim());
  ToProto(latencies_->lease_expiry.Summary(),
          response->mutable_lease_expiry_reclaim());
  response->set_version(options_.version);
  response->mutable_started()->set_seconds(
      absl::ToUnixSeconds(options_.started));
  response->set_caller_uid(caller->identity.uid);
  response->set_caller_gid(caller->identity.gid);
  response->set_caller_pid(caller->identity.pid);
  response->set_caller_has_session(caller->session != nullptr);
  if (const PooledAllocator* pool = registry_->pool()) {
    ToProto(pool->Stats(), response->mutable_arenas());
    response->mutable_arenas()->set_pooled_max_size(
        pool->options().dedicated_threshold);
  }
  for (const TenantUsage& tenant : registry_->Tenants()) {
    v1::TenantUsage* t = response->add_tenants();
    t->set_uid(tenant.uid);
    t->set_allocated_bytes(tenant.allocated_bytes);
    t->set_buffers(tenant.buffers);
  }
  return absl::OkStatus();
}

}  // namespace shmbroker
