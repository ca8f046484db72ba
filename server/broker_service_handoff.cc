// BrokerService: the handoff calls. Seal, and an Attach that waits for its
// buffer to be created or sealed without holding a thread: an
// AttachWaitReactor is a waiter in the Registry, finished by whoever hands
// it its grant (the thread that created or sealed the buffer), by the lease
// sweeper at its deadline, by its connection closing, or by gRPC cancelling
// the call.
#include <algorithm>
#include <utility>
#include <variant>

#include "absl/strings/str_format.h"
#include "server/broker_service.h"

namespace shmbroker {
grpc::ServerUnaryReactor* BrokerService::Seal(grpc::CallbackServerContext* ctx,
                                              const v1::SealRequest* request,
                                              v1::SealResponse* response) {
  return Finish(ctx, "Seal", [&]() -> absl::Status {
    absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
    if (!caller.ok()) return caller.status();
    absl::StatusOr<BufferRef> ref = TargetOf(*request);
    if (!ref.ok()) return ref.status();
    absl::StatusOr<BufferInfo> sealed =
        registry_->Seal(caller->connection->id, *ref);
    if (!sealed.ok()) return sealed.status();
    ToProto(*sealed, response->mutable_buffer());
    return absl::OkStatus();
  });
}

// One waiting Attach. Thread-safe: its grant may arrive on any thread while
// gRPC cancels it on another; exactly one of them finishes the call.
class AttachWaitReactor final : public grpc::ServerUnaryReactor {
 public:
  AttachWaitReactor(BrokerService* service,
                    std::shared_ptr<ClientConnection> connection,
                    v1::AttachResponse* response)
      : service_(service),
        connection_(std::move(connection)),
        response_(response),
        start_(absl::Now()) {}

  // Registers the wait (or attaches at once). The lock keeps a grant that
  // arrives meanwhile from finishing the call before the id is known.
  void Start(const std::string& name, AccessRequest access, LeaseId lease,
             WaitFor until, absl::Time deadline) {
    absl::StatusOr<Grant> at_once;
    {
      absl::MutexLock lock(&mu_);
      absl::StatusOr<std::variant<Grant, WaiterId>> now =
          service_->registry_->AttachOrWait(
              connection_->id, name, access, lease, until, deadline,
              [this](absl::StatusOr<Grant> grant) {
                Complete(std::move(grant));
              });
      if (now.ok() && std::holds_alternative<WaiterId>(*now)) {
        waiter_ = std::get<WaiterId>(*now);
        service_->sweeper_->WakeBy(deadline);
        return;  // from here on, `this` belongs to whoever finishes it
      }
      at_once = now.ok()
                    ? absl::StatusOr<Grant>(std::move(std::get<Grant>(*now)))
                    : now.status();
      finished_ = true;
    }
    FinishWith(std::move(at_once));  // not under mu_: OnDone deletes `this`
  }

  void OnCancel() override {
    WaiterId waiter = 0;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      waiter = waiter_;
    }
    // Only if the Registry still had it: else its grant is on the way.
    if (service_->registry_->CancelWait(waiter)) {
      FinishWith(absl::CancelledError("the waiting Attach was cancelled"));
    }
  }

  void OnDone() override { delete this; }

 private:
  void Complete(absl::StatusOr<Grant> grant) {
    {
      absl::MutexLock lock(&mu_);  // until Start has returned
      finished_ = true;
    }
    FinishWith(std::move(grant));
  }

  // Delivers the grant's fd and finishes; nothing may touch `this` after.
  void FinishWith(absl::StatusOr<Grant> grant) {
    absl::Status status = grant.status();
    if (grant.ok()) {
      status =
          service_->Deliver(*connection_, *grant, response_->mutable_buffer(),
                            response_->mutable_grant());
    }
    service_->metrics_->RpcDone("Attach", status.code(), absl::Now() - start_);
    service_->metrics_->CountRefusal(status);
    Finish(ToGrpcStatus(status));
  }

  BrokerService* const service_;
  const std::shared_ptr<ClientConnection> connection_;
  v1::AttachResponse* const response_;
  const absl::Time start_;
  absl::Mutex mu_;
  WaiterId waiter_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<BrokerService::WaitSpec> BrokerService::CheckWait(
    const v1::AttachRequest& request) {
  if (request.target_case() != v1::AttachRequest::kName) {
    return absl::InvalidArgumentError(
        "a waiting Attach needs a buffer name, not a handle");
  }
  if (request.wait() != v1::WAIT_FOR_CREATED &&
      request.wait() != v1::WAIT_FOR_SEALED) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad wait: %d (use created or sealed)",
                        static_cast<int>(request.wait())));
  }
  absl::StatusOr<AccessRequest> access = FromProto(request.mode());
  if (!access.ok()) return access.status();
  absl::StatusOr<absl::Duration> timeout = FromProto(request.wait_timeout());
  if (!timeout.ok() || *timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "bad wait_timeout: it must not be negative");
  }
  return WaitSpec{*access,
                  request.wait() == v1::WAIT_FOR_SEALED ? WaitFor::kSealed
                                                        : WaitFor::kExists,
                  *timeout};
}

grpc::ServerUnaryReactor* BrokerService::AttachWaiting(
    grpc::CallbackServerContext* ctx, const v1::AttachRequest& request,
    v1::AttachResponse* response) {
  absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
  absl::StatusOr<WaitSpec> wait =
      caller.ok() ? CheckWait(request) : caller.status();
  if (!wait.ok()) {
    return Finish(ctx, "Attach", [&] { return wait.status(); });
  }
  absl::Time deadline = absl::FromChrono(ctx->deadline());
  if (wait->timeout > absl::ZeroDuration()) {
    deadline = std::min(deadline, absl::Now() + wait->timeout);
  }
  auto* reactor = new AttachWaitReactor(this, caller->connection, response);
  reactor->Start(request.name(), wait->access, request.lease_id(), wait->until,
                 deadline);
  return reactor;
}

}  // namespace shmbroker
