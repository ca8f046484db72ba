#include "shmbroker/client.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "client/src/connection.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace shmbroker::client {
namespace {

v1::Backing ToProto(Backing backing) {
  switch (backing) {
    case Backing::kMemfd:
      return v1::BACKING_MEMFD;
    case Backing::kPosix:
      return v1::BACKING_POSIX;
    case Backing::kDefault:
      break;
  }
  return v1::BACKING_UNSPECIFIED;
}

v1::AccessMode ToProto(Access access) {
  switch (access) {
    case Access::kReadOnly:
      return v1::ACCESS_MODE_READ_ONLY;
    case Access::kReadWrite:
      return v1::ACCESS_MODE_READ_WRITE;
    case Access::kDefault:
      break;
  }
  return v1::ACCESS_MODE_UNSPECIFIED;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(
    const ClientOptions& options) {
  absl::StatusOr<std::shared_ptr<Connection>> connection =
      Connection::Open(options);
  if (!connection.ok()) return connection.status();
  return std::unique_ptr<Client>(new Client(std::move(*connection)));
}

Client::Client(std::shared_ptr<Connection> connection)
    : connection_(std::move(connection)) {}

Client::~Client() = default;

const std::string& Client::socket_path() const {
  return connection_->socket_path();
}

absl::Status Client::Ping() {
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::PingResponse response;
  return connection_->ToStatus(
      connection_->stub().Ping(&ctx, v1::PingRequest(), &response));
}

template <typename Response>
absl::StatusOr<Buffer> Client::MakeBuffer(const Response& response,
                                          bool may_recover) {
  if (response.buffer().kind() == v1::BUFFER_KIND_POOLED) {
    return MakePooledBuffer(response.buffer(), response.grant(), may_recover);
  }
  absl::StatusOr<UniqueFd> fd =
      connection_->TakeFd(response.grant().grant_id());
  if (!fd.ok()) {
    connection_->ReleaseAsync(response.buffer().handle(),
                              response.grant().lease_id());
    return fd.status();
  }
  const bool writable = response.grant().mode() == v1::ACCESS_MODE_READ_WRITE;
  const int raw_fd = fd->get();
  // The Buffer owns fd and hold from here on, so a failed map releases both.
  Buffer buffer(connection_, FromProto(response.buffer()),
                response.grant().lease_id(), fd->release(), {});
  absl::StatusOr<Mapping> mapping = Mapping::Map(
      raw_fd, response.grant().offset(), response.buffer().size(), writable);
  if (!mapping.ok()) return mapping.status();
  buffer.SetMapping(std::move(*mapping));
  return buffer;
}

absl::StatusOr<Buffer> Client::MakePooledBuffer(const v1::Buffer& info,
                                                const v1::Grant& grant,
                                                bool may_recover) {
  const bool writable = grant.mode() == v1::ACCESS_MODE_READ_WRITE;
  ArenaCache& arenas = connection_->arenas();
  absl::StatusOr<std::shared_ptr<const ArenaMapping>> arena;
  if (grant.grant_id() != 0) {
    absl::StatusOr<UniqueFd> fd = connection_->TakeFd(grant.grant_id());
    if (fd.ok()) {
      arena = arenas.Adopt(info.arena_id(), writable, std::move(*fd),
                           grant.segment_size());
    } else {
      arena = fd.status();
    }
  } else if (auto cached = arenas.Find(info.arena_id(), writable)) {
    arena = std::move(cached);
  } else if (may_recover &&
             connection_->ForgetArena(info.arena_id(), writable)) {
    // The daemon sent this arena's fd for an earlier grant that never
    // reached a Buffer (that call failed or timed out after the send). Now
    // that it has forgotten it, attaching the buffer again brings the fd;
    // the first hold goes.
    v1::AttachRequest request;
    request.set_handle(info.handle());
    request.set_mode(grant.mode());
    request.set_lease_id(grant.lease_id());
    absl::StatusOr<Buffer> again = AttachUnlocked(request, false);
    connection_->ReleaseAsync(info.handle(), grant.lease_id());
    return again;
  } else {
    arena = absl::InternalError(absl::StrFormat(
        "the daemon sent no fd for arena %d and it is not mapped here",
        info.arena_id()));
  }
  if (arena.ok() && info.offset() + info.size() > (*arena)->mapping().size()) {
    arena = absl::InternalError(
        absl::StrFormat("buffer %d at offset %d does not fit in arena %d",
                        info.handle(), info.offset(), info.arena_id()));
  }
  if (!arena.ok()) {
    connection_->ReleaseAsync(info.handle(), grant.lease_id());
    return arena.status();
  }
  return Buffer(connection_, FromProto(info), grant.lease_id(),
                std::move(*arena), writable);
}

size_t Client::TrimArenas() {
  return connection_->arenas().Trim([this](uint64_t arena_id, bool writable) {
    return connection_->ForgetArena(arena_id, writable);
  });
}

absl::StatusOr<Buffer> Client::Allocate(const AllocateOptions& options) {
  v1::AllocateRequest request;
  request.set_size(options.size);
  request.set_name(options.name);
  request.set_backing(ToProto(options.backing));
  request.set_lease_id(options.lease_id);
  request.set_kind(options.kind == Kind::kPooled ? v1::BUFFER_KIND_POOLED
                   : options.kind == Kind::kDedicated
                       ? v1::BUFFER_KIND_DEDICATED
                       : v1::BUFFER_KIND_UNSPECIFIED);
  request.set_uninitialized(options.uninitialized);
  for (const ShareRule& rule : options.share) {
    v1::ShareRule* r = request.add_share();
    r->set_scope(rule.scope == ShareRule::Scope::kUid   ? v1::SHARE_SCOPE_UID
                 : rule.scope == ShareRule::Scope::kGid ? v1::SHARE_SCOPE_GID
                                                        : v1::SHARE_SCOPE_ALL);
    r->set_id(rule.id);
    r->set_mode(rule.read_write ? v1::ACCESS_MODE_READ_WRITE
                                : v1::ACCESS_MODE_READ_ONLY);
  }
  // From the request until its arena is found: see ArenaCache::grants_mu.
  absl::ReaderMutexLock grants(&connection_->arenas().grants_mu());
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::AllocateResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().Allocate(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return MakeBuffer(response, /*may_recover=*/true);
}

absl::StatusOr<Buffer> Client::Attach(const std::string& name, Access access,
                                      uint64_t lease_id) {
  v1::AttachRequest request;
  request.set_name(name);
  request.set_mode(ToProto(access));
  request.set_lease_id(lease_id);
  return AttachWith(request);
}

absl::StatusOr<Buffer> Client::AttachHandle(uint64_t handle, Access access) {
  v1::AttachRequest request;
  request.set_handle(handle);
  request.set_mode(ToProto(access));
  return AttachWith(request);
}

absl::StatusOr<Buffer> Client::AttachWith(const v1::AttachRequest& request) {
  absl::ReaderMutexLock grants(&connection_->arenas().grants_mu());
  return AttachUnlocked(request, /*may_recover=*/true);
}

absl::StatusOr<Buffer> Client::AttachUnlocked(const v1::AttachRequest& request,
                                              bool may_recover) {
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::AttachResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().Attach(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return MakeBuffer(response, may_recover);
}

absl::StatusOr<uint32_t> Client::Release(uint64_t handle) {
  return connection_->ReleaseSync(handle, "", 0);
}

absl::StatusOr<uint32_t> Client::ReleaseByName(const std::string& name) {
  return connection_->ReleaseSync(0, name, 0);
}

absl::StatusOr<BufferInfo> Client::Describe(const std::string& name) {
  v1::DescribeRequest request;
  request.set_name(name);
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::DescribeResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().Describe(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return FromProto(response.buffer());
}

absl::StatusOr<std::vector<BufferInfo>> Client::List() {
  std::vector<BufferInfo> out;
  v1::ListRequest request;
  do {
    grpc::ClientContext ctx;
    connection_->Prepare(&ctx);
    v1::ListResponse response;
    if (absl::Status s = connection_->ToStatus(
            connection_->stub().List(&ctx, request, &response));
        !s.ok()) {
      return s;
    }
    for (const v1::Buffer& b : response.buffers()) out.push_back(FromProto(b));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return out;
}

absl::StatusOr<DaemonStatus> Client::Status() {
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::StatusResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().Status(&ctx, v1::StatusRequest(), &response));
      !s.ok()) {
    return s;
  }
  DaemonStatus status;
  status.capacity_bytes = response.capacity_bytes();
  status.allocated_bytes = response.allocated_bytes();
  status.committed_bytes = response.committed_bytes();
  status.buffers = response.buffers();
  status.clients = response.clients();
  status.holds = response.holds();
  status.version = response.version();
  status.started = absl::FromUnixSeconds(response.started().seconds());
  for (const v1::TenantUsage& t : response.tenants()) {
    status.tenants.push_back({t.uid(), t.allocated_bytes(), t.buffers()});
  }
  status.leases = response.leases();
  status.detached_leases = response.detached_leases();
  auto latency = [](const v1::ReclaimLatency& l) {
    return LatencySummary{l.samples(), FromProto(l.p50()), FromProto(l.p99()),
                          FromProto(l.max())};
  };
  status.connection_close_reclaim =
      latency(response.connection_close_reclaim());
  status.lease_expiry_reclaim = latency(response.lease_expiry_reclaim());
  const v1::PoolStatus& pool = response.arenas();
  PoolStatus& arenas = status.arenas;
  arenas.enabled = pool.enabled();
  arenas.arena_size = pool.arena_size();
  arenas.pooled_max_size = pool.pooled_max_size();
  arenas.arenas = pool.arenas();
  arenas.arena_bytes = pool.arena_bytes();
  arenas.live_buffers = pool.live_buffers();
  arenas.in_use_bytes = pool.in_use_bytes();
  arenas.free_bytes = pool.free_bytes();
  arenas.span_tail_bytes = pool.span_tail_bytes();
  arenas.largest_free_run_bytes = pool.largest_free_run_bytes();
  arenas.scavenged_bytes_total = pool.scavenged_bytes_total();
  arenas.zeroed_bytes_total = pool.zeroed_bytes_total();
  arenas.arenas_created_total = pool.arenas_created_total();
  arenas.arenas_released_total = pool.arenas_released_total();
  for (const v1::SizeClassUsage& c : pool.size_classes()) {
    arenas.size_classes.push_back(
        {c.size(), c.span_pages(), c.spans(), c.free_slots(), c.live_slots()});
  }
  for (const v1::TenantArenas& t : pool.tenants()) {
    arenas.tenants.push_back({t.uid(), t.arenas(), t.in_use_bytes()});
  }
  return status;
}

absl::StatusOr<bool> Client::Serving() {
  auto stub = grpc::health::v1::Health::NewStub(connection_->channel());
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  grpc::health::v1::HealthCheckResponse response;
  if (absl::Status s = connection_->ToStatus(
          stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &response));
      !s.ok()) {
    return s;
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

uint64_t Client::default_lease() const { return connection_->default_lease(); }

absl::StatusOr<LeaseInfo> Client::GrantLease(absl::Duration ttl,
                                             bool detached) {
  v1::GrantLeaseRequest request;
  const int64_t nanos = absl::ToInt64Nanoseconds(ttl);
  request.mutable_ttl()->set_seconds(nanos / 1000000000);
  request.mutable_ttl()->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  request.set_detached(detached);
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::GrantLeaseResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().GrantLease(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  LeaseInfo lease = FromProto(response.lease());
  if (LeaseKeeper* keeper = connection_->keeper()) {
    keeper->Track(lease.id, lease.granted_ttl);
  }
  return lease;
}

absl::StatusOr<uint64_t> Client::RevokeLease(uint64_t lease_id) {
  v1::RevokeLeaseRequest request;
  request.set_lease_id(lease_id);
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::RevokeLeaseResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().RevokeLease(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  if (LeaseKeeper* keeper = connection_->keeper()) keeper->Forget(lease_id);
  return response.bytes_reclaimed();
}

absl::StatusOr<LeaseInfo> Client::LeaseTimeToLive(uint64_t lease_id) {
  v1::LeaseTimeToLiveRequest request;
  request.set_lease_id(lease_id);
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::LeaseTimeToLiveResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().LeaseTimeToLive(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  LeaseInfo lease = FromProto(response.lease());
  for (const v1::LeaseHold& hold : response.holds()) {
    lease.holds_by_buffer.emplace_back(hold.handle(), hold.count());
  }
  return lease;
}

absl::StatusOr<std::vector<LeaseInfo>> Client::ListLeases() {
  std::vector<LeaseInfo> out;
  v1::ListLeasesRequest request;
  do {
    grpc::ClientContext ctx;
    connection_->Prepare(&ctx);
    v1::ListLeasesResponse response;
    if (absl::Status s = connection_->ToStatus(
            connection_->stub().ListLeases(&ctx, request, &response));
        !s.ok()) {
      return s;
    }
    for (const v1::Lease& l : response.leases()) out.push_back(FromProto(l));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return out;
}

}  // namespace shmbroker::client
