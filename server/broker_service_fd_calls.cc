// BrokerService: the Allocate and Attach calls clients make on the fd
// channel (common/fd_channel_protocol.h, "Why calls on the fd channel").
// The request and response are the gRPC methods' own messages and go
// through the same checks and Registry calls (AllocateFor, AttachFor,
// CheckWait); only the caller comes from the connection rather than from
// the gRPC peer and token, and the answer goes back as a Reply frame, after
// the grant's fd. A waiting Attach (or Allocate waiting for room) is a
// waiter in the Registry whose callback answers it: on the thread that
// created or sealed the buffer (or freed room), on the lease sweeper's at
// the deadline, or when the connection closes.
#include <algorithm>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_format.h"
#include "server/broker_service.h"

namespace shmbroker {
namespace {

const char* MethodName(fdchannel::CallMethod method) {
  return method == fdchannel::CallMethod::kAllocate ? "Allocate" : "Attach";
}

// Answers call `id` with `status` and, when it is OK, `response` (an
// AllocateResponse or AttachResponse, whose grant took a hold). A reply
// that cannot be sent, or does not fit, gives that hold back: the client
// never learns of it, so nobody else would.
template <typename Response>
void Answer(Registry* registry, FdChannel* fd_channel,
            ClientConnection& connection, uint64_t id, absl::Status status,
            const Response& response) {
  fdchannel::Reply reply{id, status.code(), {}};
  if (status.ok() && (!response.SerializeToString(&reply.payload) ||
                      reply.payload.size() > fdchannel::kMaxPayloadBytes)) {
    reply.code = absl::StatusCode::kInternal;
    reply.payload = absl::StrFormat(
        "the response (%d bytes) does not fit in an fd-channel reply; make "
        "this call over gRPC",
        response.ByteSizeLong());
  } else if (!status.ok()) {
    // Worded as over gRPC (a limit names its flag).
    reply.payload = ToGrpcStatus(status).error_message().substr(
        0, fdchannel::kMaxPayloadBytes);
  }
  const bool granted = status.ok();
  if (fd_channel->SendReply(connection, reply).ok() &&
      reply.code == absl::StatusCode::kOk) {
    return;
  }
  if (granted) {
    registry
        ->Release(connection.id,
                  BufferRef::ByHandle(response.buffer().handle()),
                  response.grant().lease_id())
        .IgnoreError();
  }
}

// A call's deadline. A client's timeout counts up to a year, so that any
// number a client sends makes a valid time.
absl::Time CallDeadline(const fdchannel::Call& call, absl::Time start) {
  constexpr uint64_t kMaxTimeoutMs = uint64_t{366} * 24 * 3600 * 1000;
  return call.timeout_ms > 0
             ? start +
                   absl::Milliseconds(std::min(call.timeout_ms, kMaxTimeoutMs))
             : absl::InfiniteFuture();
}

}  // namespace

void BrokerService::OnAllocateCall(
    const std::shared_ptr<ClientConnection>& connection,
    const fdchannel::Call& call, absl::Time start) {
  v1::AllocateRequest request;
  v1::AllocateResponse response;
  absl::StatusOr<absl::Duration> wait =
      request.ParseFromString(call.payload)
          ? RoomWait(request)
          : absl::InvalidArgumentError(
                "malformed AllocateRequest on the fd channel");
  if (!wait.ok() || *wait == absl::ZeroDuration()) {
    absl::Status status = wait.ok()
                              ? AllocateFor(*connection, request, &response)
                              : wait.status();
    Record("Allocate", status, start);
    Answer(registry_, fd_channel_, *connection, call.id, std::move(status),
           response);
    return;
  }
  absl::StatusOr<AllocateSpec> spec = FromProto(request);
  if (!spec.ok()) {
    Record("Allocate", spec.status(), start);
    Answer(registry_, fd_channel_, *connection, call.id, spec.status(),
           response);
    return;
  }
  const absl::Time deadline =
      std::min(CallDeadline(call, start), start + *wait);
  Registry::WaitDone finish =
      AnswerLater<v1::AllocateResponse>(connection, call.id, "Allocate", start);
  if (WaitOrAnswer(
          registry_->AllocateOrWait(connection->id, *spec, deadline, finish),
          finish, deadline)) {
    registry_->ServeRoomWaiters();  // room may have come back meanwhile
  }
}

template <typename Response>
Registry::WaitDone BrokerService::AnswerLater(
    std::shared_ptr<ClientConnection> connection, uint64_t id,
    const char* method, absl::Time start) {
  // Nothing else refers to the call meanwhile, so it needs no object of its
  // own.
  return [this, connection = std::move(connection), id, method,
          start](absl::StatusOr<Grant> grant) {
    Response granted;
    absl::Status status = grant.status();
    if (grant.ok()) {
      status = Deliver(*connection, *grant, granted.mutable_buffer(),
                       granted.mutable_grant());
    }
    Record(method, status, start);
    Answer(registry_, fd_channel_, *connection, id, std::move(status), granted);
  };
}

bool BrokerService::WaitOrAnswer(
    absl::StatusOr<std::variant<Grant, WaiterId>> now,
    const Registry::WaitDone& finish, absl::Time deadline) {
  if (now.ok() && std::holds_alternative<WaiterId>(*now)) {
    if (deadline != absl::InfiniteFuture()) sweeper_->WakeBy(deadline);
    return true;
  }
  finish(now.ok() ? absl::StatusOr<Grant>(std::move(std::get<Grant>(*now)))
                  : now.status());
  return false;
}

void BrokerService::OnCall(const std::shared_ptr<ClientConnection>& connection,
                           fdchannel::Call call) {
  const absl::Time start = absl::Now();
  const char* method = MethodName(call.method);
  metrics_->FdChannelCall(call.method);
  if (call.method == fdchannel::CallMethod::kAllocate) {
    OnAllocateCall(connection, call, start);
    return;
  }
  v1::AttachRequest request;
  v1::AttachResponse response;
  if (!request.ParseFromString(call.payload)) {
    absl::Status status =
        absl::InvalidArgumentError("malformed AttachRequest on the fd channel");
    Record(method, status, start);
    Answer(registry_, fd_channel_, *connection, call.id, status, response);
    return;
  }
  if (request.wait() == v1::WAIT_FOR_NOTHING) {
    absl::Status status = AttachFor(*connection, request, &response);
    Record(method, status, start);
    Answer(registry_, fd_channel_, *connection, call.id, std::move(status),
           response);
    return;
  }
  absl::StatusOr<WaitSpec> wait = CheckWait(request);
  if (!wait.ok()) {
    Record(method, wait.status(), start);
    Answer(registry_, fd_channel_, *connection, call.id, wait.status(),
           response);
    return;
  }
  // As over gRPC: the call's deadline, or the wait's timeout if sooner.
  absl::Time deadline = CallDeadline(call, start);
  if (wait->timeout > absl::ZeroDuration()) {
    deadline = std::min(deadline, start + wait->timeout);
  }
  Registry::WaitDone finish =
      AnswerLater<v1::AttachResponse>(connection, call.id, "Attach", start);
  WaitOrAnswer(registry_->AttachOrWait(connection->id, request.name(),
                                       wait->access, request.lease_id(),
                                       wait->until, deadline, finish),
               finish, deadline);
}

}  // namespace shmbroker
