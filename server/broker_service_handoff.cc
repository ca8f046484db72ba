// BrokerService: the handoff calls. Seal; an Attach that waits for its
// buffer to be created or sealed; and an Allocate that waits for room. Both
// waits hold no thread: a WaitReactor is a waiter in the Registry, finished
// by whoever hands it its grant (the thread that created or sealed the
// buffer, or freed room), by the lease sweeper at its deadline, by its
// connection closing, or by gRPC cancelling the call.
#include <algorithm>
#include <functional>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/broker_service.h"
#include "server/reactor_order.h"

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

// One waiting call: an Attach waiting for its buffer, or an Allocate
// waiting for room. Thread-safe: its grant may arrive on any thread while
// gRPC cancels it on another; exactly one of them finishes the call.
template <typename Response>
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  // Registers the waiter (Registry::AttachOrWait or AllocateOrWait) with
  // the callback it is given.
  using Begin = std::function<absl::StatusOr<std::variant<Grant, WaiterId>>(
      Registry::WaitDone)>;
  // Forgets the waiter (CancelWait or CancelAllocateWait).
  using Cancel = std::function<bool(WaiterId)>;

  WaitReactor(BrokerService* service,
              std::shared_ptr<ClientConnection> connection, Response* response,
              const char* method, Cancel cancel)
      : service_(service),
        connection_(std::move(connection)),
        response_(response),
        method_(method),
        cancel_(std::move(cancel)),
        start_(absl::Now()) {}

  // Registers the wait (or finishes at once). The lock keeps a grant that
  // arrives meanwhile from finishing the call before the id is known.
  // Whether it waits; if so, `this` belongs to whoever finishes it.
  bool Start(const Begin& begin, absl::Time deadline) {
    absl::StatusOr<Grant> at_once;
    {
      absl::MutexLock lock(&mu_);
      absl::StatusOr<std::variant<Grant, WaiterId>> now = begin(
          [this](absl::StatusOr<Grant> grant) { Complete(std::move(grant)); });
      if (now.ok() && std::holds_alternative<WaiterId>(*now)) {
        waiter_ = std::get<WaiterId>(*now);
        service_->sweeper_->WakeBy(deadline);
        HandingToGrpc(this);  // returned to gRPC, which may cancel it
        return true;
      }
      at_once = now.ok()
                    ? absl::StatusOr<Grant>(std::move(std::get<Grant>(*now)))
                    : now.status();
      finished_ = true;
    }
    FinishWith(std::move(at_once));  // not under mu_: OnDone deletes `this`
    return false;
  }

  void OnCancel() override {
    ReactionBegins(this);
    WaiterId waiter = 0;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      waiter = waiter_;
    }
    // Only if the Registry still had it: else its grant is on the way.
    if (cancel_(waiter)) {
      FinishWith(absl::CancelledError(
          absl::StrFormat("the waiting %s was cancelled", method_)));
    }
  }

  void OnDone() override {
    ReactionBegins(this);
    delete this;
  }

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
    service_->metrics_->RpcDone(method_, status.code(), absl::Now() - start_);
    service_->metrics_->CountRefusal(status);
    HandingToGrpc(this);
    Finish(ToGrpcStatus(status));
  }

  BrokerService* const service_;
  const std::shared_ptr<ClientConnection> connection_;
  Response* const response_;
  const char* const method_;
  const Cancel cancel_;
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
  auto* reactor = new WaitReactor<v1::AttachResponse>(
      this, caller->connection, response, "Attach",
      [this](WaiterId waiter) { return registry_->CancelWait(waiter); });
  reactor->Start(
      [&](Registry::WaitDone done) {
        return registry_->AttachOrWait(caller->connection->id, request.name(),
                                       wait->access, request.lease_id(),
                                       wait->until, deadline, std::move(done));
      },
      deadline);
  return reactor;
}

absl::StatusOr<absl::Duration> BrokerService::RoomWait(
    const v1::AllocateRequest& request) {
  if (!request.has_wait_for_room()) return absl::ZeroDuration();
  absl::StatusOr<absl::Duration> wait = FromProto(request.wait_for_room());
  if (!wait.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad wait_for_room: ", wait.status().message()));
  }
  if (*wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "bad wait_for_room: it must not be negative");
  }
  return *wait;
}

grpc::ServerUnaryReactor* BrokerService::AllocateWaiting(
    grpc::CallbackServerContext* ctx, const v1::AllocateRequest& request,
    absl::Duration wait, v1::AllocateResponse* response) {
  absl::StatusOr<Caller> caller = Begin(ctx, /*need_connection=*/true);
  absl::StatusOr<AllocateSpec> spec =
      caller.ok() ? FromProto(request) : caller.status();
  if (!spec.ok()) {
    return Finish(ctx, "Allocate", [&] { return spec.status(); });
  }
  const absl::Time deadline =
      std::min(absl::FromChrono(ctx->deadline()), absl::Now() + wait);
  auto* reactor = new WaitReactor<v1::AllocateResponse>(
      this, caller->connection, response, "Allocate", [this](WaiterId waiter) {
        return registry_->CancelAllocateWait(waiter);
      });
  if (reactor->Start(
          [&](Registry::WaitDone done) {
            return registry_->AllocateOrWait(caller->connection->id, *spec,
                                             deadline, std::move(done));
          },
          deadline)) {
    registry_->ServeRoomWaiters();  // room may have come back meanwhile
  }
  return reactor;
}

}  // namespace shmbroker
