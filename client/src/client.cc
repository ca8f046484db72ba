#include "shmbroker/client.h"

#include <utility>

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
absl::StatusOr<Buffer> Client::MakeBuffer(const Response& response) {
  absl::StatusOr<UniqueFd> fd =
      connection_->TakeFd(response.grant().grant_id());
  if (!fd.ok()) {
    connection_->ReleaseAsync(response.buffer().handle());
    return fd.status();
  }
  const bool writable = response.grant().mode() == v1::ACCESS_MODE_READ_WRITE;
  const int raw_fd = fd->get();
  // The Buffer owns fd and hold from here on, so a failed map releases both.
  Buffer buffer(connection_, FromProto(response.buffer()), fd->release(), {});
  absl::StatusOr<Mapping> mapping = Mapping::Map(
      raw_fd, response.grant().offset(), response.buffer().size(), writable);
  if (!mapping.ok()) return mapping.status();
  buffer.mapping_ = std::move(*mapping);
  return buffer;
}

absl::StatusOr<Buffer> Client::Allocate(const AllocateOptions& options) {
  v1::AllocateRequest request;
  request.set_size(options.size);
  request.set_name(options.name);
  request.set_backing(ToProto(options.backing));
  for (const ShareRule& rule : options.share) {
    v1::ShareRule* r = request.add_share();
    r->set_scope(rule.scope == ShareRule::Scope::kUid   ? v1::SHARE_SCOPE_UID
                 : rule.scope == ShareRule::Scope::kGid ? v1::SHARE_SCOPE_GID
                                                        : v1::SHARE_SCOPE_ALL);
    r->set_id(rule.id);
    r->set_mode(rule.read_write ? v1::ACCESS_MODE_READ_WRITE
                                : v1::ACCESS_MODE_READ_ONLY);
  }
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::AllocateResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().Allocate(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return MakeBuffer(response);
}

absl::StatusOr<Buffer> Client::Attach(const std::string& name, Access access) {
  v1::AttachRequest request;
  request.set_name(name);
  request.set_mode(ToProto(access));
  return AttachWith(request);
}

absl::StatusOr<Buffer> Client::AttachHandle(uint64_t handle, Access access) {
  v1::AttachRequest request;
  request.set_handle(handle);
  request.set_mode(ToProto(access));
  return AttachWith(request);
}

absl::StatusOr<Buffer> Client::AttachWith(const v1::AttachRequest& request) {
  grpc::ClientContext ctx;
  connection_->Prepare(&ctx);
  v1::AttachResponse response;
  if (absl::Status s = connection_->ToStatus(
          connection_->stub().Attach(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return MakeBuffer(response);
}

absl::StatusOr<uint32_t> Client::Release(uint64_t handle) {
  return connection_->ReleaseSync(handle);
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
  status.buffers = response.buffers();
  status.clients = response.clients();
  status.holds = response.holds();
  status.version = response.version();
  status.started = absl::FromUnixSeconds(response.started().seconds());
  for (const v1::TenantUsage& t : response.tenants()) {
    status.tenants.push_back({t.uid(), t.allocated_bytes(), t.buffers()});
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

}  // namespace shmbroker::client
