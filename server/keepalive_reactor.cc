#include "server/keepalive_reactor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/log_rate_limiter.h"
#include "server/logging.h"
#include "server/proto_convert.h"
#include "server/reactor_order.h"

namespace shmbroker {

KeepAliveReactor::KeepAliveReactor(Registry* registry, Metrics* metrics,
                                   std::shared_ptr<ClientConnection> connection,
                                   Identity caller, const absl::Status& setup)
    : registry_(registry),
      metrics_(metrics),
      connection_(std::move(connection)),
      caller_(caller) {
  if (!setup.ok()) {
    metrics_->RpcDone("KeepAlive", setup.code(), absl::ZeroDuration());
    HandingToGrpc(this);
    Finish(ToGrpcStatus(setup));
    return;
  }
  HandingToGrpc(this);
  StartRead(&request_);
}

void KeepAliveReactor::OnReadDone(bool ok) {
  ReactionBegins(this);
  if (!ok) {  // the client half-closed (or went away)
    HandingToGrpc(this);
    Finish(grpc::Status::OK);
    return;
  }
  if (!connection_->keepalive_rate.TryTake()) {
    const absl::Status over = absl::ResourceExhaustedError(absl::StrFormat(
        "KeepAlive over %d messages per second for this client connection "
        "(--keepalive_max_per_second); renew each lease about every TTL/3",
        static_cast<int>(connection_->keepalive_rate.rate())));
    uint64_t suppressed = 0;
    if (AllowClientWarning(connection_->warnings, &suppressed)) {
      spdlog::warn("KeepAlive: pid {} uid {}: {}{}", caller_.pid, caller_.uid,
                   over.message(), SuppressedNote(suppressed));
    }
    metrics_->RpcDone("KeepAlive", over.code(), absl::ZeroDuration());
    HandingToGrpc(this);
    Finish(ToGrpcStatus(over));
    return;
  }
  Renew();
  HandingToGrpc(this);
  StartWrite(&response_);
}

void KeepAliveReactor::Renew() {
  const absl::Time start = absl::Now();
  response_.Clear();
  absl::StatusOr<LeaseInfo> lease =
      registry_->KeepAlive(connection_->id, request_.lease_id());
  if (lease.ok()) {
    response_.set_lease_id(lease->id);
    ToProto(lease->deadline - absl::Now(), response_.mutable_ttl());
    ToProto(lease->granted_ttl, response_.mutable_granted_ttl());
  } else {
    absl::Status error = lease.status();
    response_.set_lease_id(request_.lease_id());
    if (connection_->closed.load()) {
      // Say why the connection is gone: its default lease's fate.
      absl::StatusOr<LeaseDetail> gone =
          registry_->LeaseTimeToLive(caller_, 0, connection_->default_lease);
      error = absl::FailedPreconditionError(absl::StrCat(
          "client connection closed: ", gone.ok()
                                            ? absl::string_view("it hung up")
                                            : gone.status().message()));
    }
    response_.set_error_code(static_cast<int>(error.code()));
    response_.set_error_message(std::string{error.message()});
  }
  metrics_->RpcDone("KeepAlive", lease.status().code(), absl::Now() - start);
}

void KeepAliveReactor::OnWriteDone(bool ok) {
  ReactionBegins(this);
  HandingToGrpc(this);
  if (!ok) {
    Finish(grpc::Status::OK);
    return;
  }
  StartRead(&request_);
}

void KeepAliveReactor::OnDone() {
  ReactionBegins(this);
  delete this;
}

}  // namespace shmbroker
