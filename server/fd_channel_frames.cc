// FdChannel: applying the frames a client sends (the one-way Release,
// ForgetArena, Seal and Present, and Calls, which go to the FdCallHandler),
// from the event loop or from a gRPC handler before its call (rule 2 of
// common/fd_channel_protocol.h).
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "server/fd_channel.h"
#include "server/log_rate_limiter.h"
#include "server/logging.h"

namespace shmbroker {

absl::Status FdChannel::ApplyPending(ClientConnection& connection,
                                     std::optional<uint64_t> frames_sent,
                                     bool* throttled) {
  if (connection.closed.load()) {
    return absl::FailedPreconditionError("client connection is closed");
  }
  if (frames_sent && *frames_sent <= connection.frames_applied.load()) {
    return absl::OkStatus();  // the common case: no syscall at all
  }
  absl::Status why;
  {
    absl::MutexLock lock(&connection.read_mu);
    why = ApplyLocked(connection, frames_sent, throttled);
  }
  if (why.ok()) return why;
  const bool protocol_error = absl::IsInvalidArgument(why);
  uint64_t suppressed = 0;
  // A client reconnecting in a loop could repeat this for ever: rate-limited
  // daemon-wide, as each connection says it once.
  if (protocol_error && LogRateLimits::ClientWarnings().Allow(&suppressed)) {
    spdlog::warn("client connection {} (pid {} uid {}): {}{}", connection.id,
                 connection.identity.pid, connection.identity.uid,
                 why.message(), SuppressedNote(suppressed));
  }
  if (protocol_error) {
    SendError(connection.socket.get(), std::string(why.message()));
  }
  if (std::shared_ptr<ClientConnection> shared = FindById(connection.id)) {
    Close(shared,
          protocol_error ? CloseReason::kProtocolError : CloseReason::kHangup,
          std::string(why.message()));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("client connection closed: ", why.message()));
}

absl::Status FdChannel::ApplyLocked(ClientConnection& connection,
                                    std::optional<uint64_t> frames_sent,
                                    bool* throttled) {
  for (;;) {
    // Once the frames the client counted are applied, skip the final
    // recvmsg that would only say EAGAIN.
    if (frames_sent && connection.frames_applied.load() >= *frames_sent) {
      return absl::OkStatus();
    }
    // A gRPC call's own frames (rule 2) are never held back: the call
    // itself is counted against --max_calls_per_second.
    if (throttled != nullptr && !connection.frame_rate.TryTake()) {
      *throttled = true;
      return absl::OkStatus();
    }
    fdchannel::Frame frame;
    std::string payload;
    fdchannel::Received got = fdchannel::RecvFrame(
        connection.socket.get(), &frame, &payload, MSG_DONTWAIT);
    // A descriptor a client sends is closed with `got` unless it came with
    // a Present frame (DecodeFromClient refuses any other).
    if (got.envelope.bytes < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "receive");
    }
    if (got.envelope.bytes == 0) {
      return absl::UnavailableError("peer closed the fd channel");
    }
    absl::StatusOr<fdchannel::FromClient> message =
        fdchannel::DecodeFromClient(got.envelope, frame, payload);
    if (!message.ok()) return message.status();
    connection.frames_applied.fetch_add(1);
    Apply(connection, *std::move(message), std::move(got.fd));
  }
}

void FdChannel::ApplyCall(ClientConnection& connection, fdchannel::Call call) {
  std::shared_ptr<ClientConnection> shared = FindById(connection.id);
  if (shared == nullptr) return;  // closed meanwhile: nobody to answer
  {
    absl::ReaderMutexLock lock(&calls_mu_);
    if (calls_ != nullptr) {
      calls_->OnCall(shared, std::move(call));
      return;
    }
  }
  SendReply(connection,
            fdchannel::Reply{call.id, absl::StatusCode::kUnavailable,
                             "shmbrokerd is starting or stopping: try again"})
      .IgnoreError();
}

void FdChannel::Apply(ClientConnection& connection, fdchannel::FromClient frame,
                      UniqueFd fd) {
  if (auto* call = std::get_if<fdchannel::Call>(&frame)) {
    ApplyCall(connection, std::move(*call));
    return;
  }
  if (const auto* forget = std::get_if<fdchannel::ForgetArena>(&frame)) {
    absl::MutexLock lock(&connection.send_mu);
    connection.arenas_sent.erase(forget->arena);
    return;
  }
  if (const auto* present = std::get_if<fdchannel::Present>(&frame)) {
    // After a restart (core/registry_restore.cc). The outcome is the
    // Resume call's to report; the log says only what went wrong, at most
    // once per interval per connection.
    absl::StatusOr<uint64_t> adopted = registry_->Present(
        connection.id, present->handle, present->lease, std::move(fd));
    if (adopted.ok()) {
      if (*adopted > 0) metrics_->Readopted(*adopted);
      return;
    }
    metrics_->PresentRefused();
    uint64_t suppressed = 0;
    if (AllowClientWarning(connection.warnings, &suppressed)) {
      spdlog::warn(
          "client connection {} (pid {} uid {}): presented buffer {} "
          "refused: {}{}",
          connection.id, connection.identity.pid, connection.identity.uid,
          present->handle, adopted.status().message(),
          SuppressedNote(suppressed));
    }
    return;
  }
  absl::Status failed;
  fdchannel::FrameType type;
  if (const auto* seal = std::get_if<fdchannel::Seal>(&frame)) {
    // The library sends a seal one-way only when it cannot fail (rule 2),
    // so a failure here means the hold went first (its lease ended) or a
    // client that does not follow the protocol.
    type = fdchannel::FrameType::kSeal;
    failed = registry_->Seal(connection.id, BufferRef::ByHandle(seal->handle))
                 .status();
  } else {
    const auto& release = std::get<fdchannel::Release>(frame);
    type = fdchannel::FrameType::kRelease;
    failed = registry_
                 ->Release(connection.id, BufferRef::ByHandle(release.handle),
                           release.lease)
                 .status();
  }
  if (failed.ok()) return;
  metrics_->OneWayFailed(type);
  uint64_t suppressed = 0;
  if (AllowClientWarning(connection.warnings, &suppressed)) {
    spdlog::warn(
        "client connection {} (pid {} uid {}): {} over the fd channel: {}{}",
        connection.id, connection.identity.pid, connection.identity.uid,
        type == fdchannel::FrameType::kSeal ? "seal" : "release",
        failed.message(), SuppressedNote(suppressed));
  }
}

}  // namespace shmbroker
