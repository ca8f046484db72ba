#include "shmbroker/client.h"

#include <utility>

#include "client/src/connection.h"
#include "client/src/grants.h"
#include "client/src/pages.h"
#include "client/src/proto_convert.h"
#include "client/src/test_hooks.h"
#include "client/src/watcher_stream.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace shmbroker::client {

using Stub = v1::Broker::Stub;

namespace {

// Every page of the listing `method`; `items(page)` is a page's repeated
// field, whose elements FromProto converts.
template <typename Item, typename Request, typename Response, typename Items>
absl::StatusOr<std::vector<Item>> ListAll(
    const Connection& connection, UnaryMethod<Stub, Request, Response> method,
    Items items) {
  return CollectPages<Item>(
      Request(),
      [&](const Request& page) { return connection.Call(method, page); },
      [&](const Response& page, std::vector<Item>* out) {
        for (const auto& item : items(page)) out->push_back(FromProto(item));
      });
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

uint64_t Client::default_lease() const { return connection_->default_lease(); }

absl::Status Client::Ping() {
  return connection_->Call(&Stub::Ping, v1::PingRequest()).status();
}

absl::StatusOr<bool> Client::Serving() {
  using grpc::health::v1::Health;
  using grpc::health::v1::HealthCheckResponse;
  auto health = Health::NewStub(connection_->channel());
  absl::StatusOr<HealthCheckResponse> response = connection_->Call(
      *health, &Health::Stub::Check, grpc::health::v1::HealthCheckRequest());
  if (!response.ok()) return response.status();
  return response->status() == HealthCheckResponse::SERVING;
}

absl::StatusOr<Buffer> Client::Allocate(const AllocateOptions& options) {
  return Grants::Allocate(connection_, ToProto(options), options.wait_for_room);
}

absl::StatusOr<Buffer> Client::Attach(const std::string& name, Access access,
                                      uint64_t lease_id) {
  v1::AttachRequest request;
  request.set_name(name);
  request.set_mode(ToProto(access));
  request.set_lease_id(lease_id);
  return Grants::Attach(connection_, request);
}

absl::StatusOr<Buffer> Client::AttachHandle(uint64_t handle, Access access,
                                            uint64_t lease_id) {
  v1::AttachRequest request;
  request.set_handle(handle);
  request.set_mode(ToProto(access));
  request.set_lease_id(lease_id);
  return Grants::Attach(connection_, request);
}

absl::StatusOr<Buffer> Client::AttachWhen(const std::string& name,
                                          const WaitOptions& options) {
  v1::AttachRequest request;
  request.set_name(name);
  request.set_mode(ToProto(options.access));
  request.set_lease_id(options.lease_id);
  request.set_wait(options.until == WaitOptions::Until::kSealed
                       ? v1::WAIT_FOR_SEALED
                       : v1::WAIT_FOR_CREATED);
  ToProto(options.timeout, request.mutable_wait_timeout());
  return Grants::Attach(connection_, request, options.timeout);
}

absl::StatusOr<BufferInfo> Client::Seal(const std::string& name) {
  v1::SealRequest request;
  request.set_name(name);
  absl::StatusOr<v1::SealResponse> sealed =
      connection_->Call(&v1::Broker::Stub::Seal, request);
  if (!sealed.ok()) return sealed.status();
  PausePoint("seal_reply");
  return FromProto(sealed->buffer());
}

absl::StatusOr<uint32_t> Client::Release(uint64_t handle) {
  return connection_->ReleaseSync(handle, "", 0);
}

absl::StatusOr<uint32_t> Client::ReleaseByName(const std::string& name) {
  return connection_->ReleaseSync(0, name, 0);
}

void Client::ReleaseOneWay(uint64_t handle, uint64_t lease_id) {
  connection_->ReleaseAsync(handle, lease_id);
}

size_t Client::TrimArenas() {
  return connection_->TrimArenas(/*only_if_many=*/false);
}

absl::StatusOr<BufferInfo> Client::Describe(const std::string& name) {
  v1::DescribeRequest request;
  request.set_name(name);
  absl::StatusOr<v1::DescribeResponse> response =
      connection_->Call(&Stub::Describe, request);
  if (!response.ok()) return response.status();
  return FromProto(response->buffer());
}

absl::StatusOr<std::vector<BufferInfo>> Client::List() {
  return ListAll<BufferInfo>(
      *connection_, &Stub::List,
      [](const v1::ListResponse& page) -> const auto& {
        return page.buffers();
      });
}

absl::StatusOr<ListResult> Client::ListWithRevision() {
  ListResult result;
  bool first = true;
  absl::StatusOr<std::vector<BufferInfo>> buffers = CollectPages<BufferInfo>(
      v1::ListRequest(),
      [&](const v1::ListRequest& page) {
        return connection_->Call(&Stub::List, page);
      },
      [&](const v1::ListResponse& page, std::vector<BufferInfo>* out) {
        if (first) result.revision = page.revision();
        first = false;
        for (const v1::Buffer& b : page.buffers()) out->push_back(FromProto(b));
      });
  if (!buffers.ok()) return buffers.status();
  result.buffers = std::move(*buffers);
  return result;
}

absl::StatusOr<std::unique_ptr<Watcher>> Client::Watch(
    const std::string& prefix, const WatchOptions& options) {
  // The stream may end after this Client: it keeps the connection.
  std::shared_ptr<const Connection> connection = connection_;
  auto stream = std::make_unique<Watcher::Stream>(
      v1::Broker::NewStub(connection_->channel()),
      [connection](grpc::ClientContext* ctx) {
        connection->PrepareStream(ctx);
      },
      [connection](const grpc::Status& status) {
        return connection->ToStatus(status);
      });
  v1::WatchRequest request;
  request.set_prefix(prefix);
  request.set_after_revision(options.after_revision);
  stream->Start(request);
  // Until the watcher is registered, or the daemon refused it.
  if (absl::Status s =
          stream->AwaitStarted(absl::Now() + connection_->timeout());
      !s.ok()) {
    stream->Cancel();
    stream->AwaitDone();
    return s;
  }
  return std::make_unique<Watcher>(std::move(stream));
}

absl::StatusOr<DaemonStatus> Client::Status() {
  absl::StatusOr<v1::StatusResponse> response =
      connection_->Call(&Stub::Status, v1::StatusRequest());
  if (!response.ok()) return response.status();
  return FromProto(*response);
}

absl::StatusOr<LeaseInfo> Client::GrantLease(absl::Duration ttl, bool detached,
                                             bool keep_alive) {
  v1::GrantLeaseRequest request;
  ToProto(ttl, request.mutable_ttl());
  request.set_detached(detached);
  absl::StatusOr<v1::GrantLeaseResponse> response =
      connection_->Call(&Stub::GrantLease, request);
  if (!response.ok()) return response.status();
  LeaseInfo lease = FromProto(response->lease());
  if (LeaseKeeper* keeper = connection_->keeper(); keeper && keep_alive) {
    keeper->Track(lease.id, lease.granted_ttl);
  }
  return lease;
}

absl::StatusOr<uint64_t> Client::RevokeLease(uint64_t lease_id) {
  v1::RevokeLeaseRequest request;
  request.set_lease_id(lease_id);
  absl::StatusOr<v1::RevokeLeaseResponse> response =
      connection_->Call(&Stub::RevokeLease, request);
  if (!response.ok()) return response.status();
  if (LeaseKeeper* keeper = connection_->keeper()) keeper->Forget(lease_id);
  return response->bytes_reclaimed();
}

absl::StatusOr<LeaseInfo> Client::LeaseTimeToLive(uint64_t lease_id) {
  v1::LeaseTimeToLiveRequest request;
  request.set_lease_id(lease_id);
  absl::StatusOr<v1::LeaseTimeToLiveResponse> response =
      connection_->Call(&Stub::LeaseTimeToLive, request);
  if (!response.ok()) return response.status();
  return FromProto(*response);
}

absl::StatusOr<std::vector<LeaseInfo>> Client::ListLeases() {
  return ListAll<LeaseInfo>(
      *connection_, &Stub::ListLeases,
      [](const v1::ListLeasesResponse& page) -> const auto& {
        return page.leases();
      });
}

}  // namespace shmbroker::client
