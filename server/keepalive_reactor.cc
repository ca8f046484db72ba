#include "server/keepalive_reactor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/logging.h"
#include "server/proto_convert.h"

namespace shmbroker {

KeepAliveReactor::KeepAliveReactor(Registry* registry, Metrics* metrics,
                                   std::shared_ptr<Session> session,
                                   Identity caller, const absl::Status& setup,
                                   uint32_t max_per_second)
    : registry_(registry),
      metrics_(metrics),
      session_(std::move(session)),
      caller_(caller),
      max_per_second_(max_per_second) {
  if (!setup.ok()) {
    metrics_->RpcDone("KeepAlive", setup.code(), absl::ZeroDuration());
    Finish(ToGrpcStatus(setup));
    return;
  }
  StartRead(&request_);
}

bool KeepAliveReactor::TakeToken() {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&session_->keepalive_mu);
  double& tokens = session_->keepalive_tokens;
  if (tokens < 0) {
    tokens = max_per_second_;
  } else {
    tokens = std::min(
        max_per_second_,
        tokens + absl::ToDoubleSeconds(now - session_->keepalive_refilled) *
                     max_per_second_);
  }
  session_->keepalive_refilled = now;
  if (tokens < 1) return false;
  tokens -= 1;
  return true;
}

void KeepAliveReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client half-closed (or went away)
    Finish(grpc::Status::OK);
    return;
  }
  if (!TakeToken()) {
    const absl::Status over = absl::ResourceExhaustedError(absl::StrFormat(
        "KeepAlive over %d messages per second for this client connection "
        "(--keepalive_max_per_second); renew each lease about every TTL/3",
        static_cast<int>(max_per_second_)));
    spdlog::warn("KeepAlive: pid {} uid {}: {}", caller_.pid, caller_.uid,
                 over.message());
    metrics_->RpcDone("KeepAlive", over.code(), absl::ZeroDuration());
    Finish(ToGrpcStatus(over));
    return;
  }
  Renew();
  StartWrite(&response_);
}

void KeepAliveReactor::Renew() {
  const absl::Time start = absl::Now();
  response_.Clear();
  absl::StatusOr<LeaseInfo> lease =
      registry_->KeepAlive(session_->client, request_.lease_id());
  if (lease.ok()) {
    response_.set_lease_id(lease->id);
    ToProto(lease->deadline - absl::Now(), response_.mutable_ttl());
    ToProto(lease->granted_ttl, response_.mutable_granted_ttl());
  } else {
    absl::Status error = lease.status();
    response_.set_lease_id(request_.lease_id());
    if (session_->closed.load()) {
      // Say why the connection is gone: its default lease's fate.
      absl::StatusOr<LeaseDetail> gone =
          registry_->LeaseTimeToLive(caller_, 0, session_->default_lease);
      error = absl::FailedPreconditionError(absl::StrCat(
          "client connection closed: ", gone.ok()
                                            ? absl::string_view("it hung up")
                                            : gone.status().message()));
    }
    response_.set_error_code(static_cast<int>(error.code()));
    response_.set_error_message(std::string(error.message()));
  }
  metrics_->RpcDone("KeepAlive", lease.status().code(), absl::Now() - start);
}

void KeepAliveReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status::OK);
    return;
  }
  StartRead(&request_);
}

void KeepAliveReactor::OnDone() { delete this; }

}  // namespace shmbroker
