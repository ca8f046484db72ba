#include "client/src/fd_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/default_socket.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"

namespace shmbroker::client {
namespace {

absl::Status ConnectError(int err, const std::string& socket_path) {
  std::string cause = std::strerror(err);
  if (err == ENOENT || err == ECONNREFUSED) {
    return absl::UnavailableError(absl::StrFormat(
        "no daemon at %s (%s); start shmbrokerd or pass --socket", socket_path,
        cause));
  }
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: cannot connect to %s (%s); the caller must be "
        "in the socket's group",
        socket_path, cause));
  }
  return absl::UnavailableError(
      absl::StrFormat("cannot connect to %s: %s", socket_path, cause));
}

}  // namespace

absl::StatusOr<std::unique_ptr<FdChannel>> FdChannel::Open(
    const std::string& socket_path, absl::Duration timeout) {
  std::unique_ptr<FdChannel> channel(new FdChannel());
  if (absl::Status s = channel->Greet(socket_path, timeout); !s.ok()) return s;
  return channel;
}

absl::Status FdChannel::Greet(const std::string& socket_path,
                              absl::Duration timeout) {
  const std::string path = FdChannelPath(socket_path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  socket_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!socket_.valid()) return ConnectError(errno, socket_path);
  if (::connect(socket_.get(), reinterpret_cast<sockaddr*>(&addr),
                sizeof(addr)) != 0) {
    return ConnectError(errno, socket_path);
  }
  pollfd p{socket_.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) !=
      1) {
    return absl::DeadlineExceededError(absl::StrCat(
        "daemon at ", socket_path, " did not greet on the fd channel"));
  }
  fdchannel::Frame frame;
  fdchannel::Received got = fdchannel::RecvFrame(socket_.get(), &frame, 0);
  absl::StatusOr<fdchannel::FromDaemon> greeting =
      fdchannel::DecodeFromDaemon(got.envelope, frame);
  if (greeting.ok()) {
    if (const auto* error = std::get_if<fdchannel::ErrorText>(&*greeting)) {
      return absl::UnavailableError(
          absl::StrCat("daemon refused the connection: ", error->text));
    }
  }
  const auto* hello =
      greeting.ok() ? std::get_if<fdchannel::Hello>(&*greeting) : nullptr;
  if (hello == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "unexpected greeting on ", path, ": not a shmbrokerd of this version"));
  }
  hello_ = *hello;
  token_hex_ = fdchannel::TokenToHex(hello_.token);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> FdChannel::TakeFd(uint64_t grant_id,
                                           absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  absl::Status got = ReadUntilLocked(
      [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return unclaimed_.contains(grant_id);
      },
      deadline,
      absl::StrFormat("the fd for grant %d did not arrive on the fd channel",
                      grant_id));
  if (!got.ok()) return got;
  auto it = unclaimed_.find(grant_id);
  UniqueFd fd = std::move(it->second);
  unclaimed_.erase(it);
  return fd;
}

absl::StatusOr<fdchannel::Reply> FdChannel::Call(fdchannel::Call call,
                                                 absl::Time deadline) {
  call.id = next_call_.fetch_add(1);
  const uint64_t id = call.id;
  if (absl::Status sent = SendWaiting(fdchannel::Encode(call), call.payload, -1,
                                      deadline, "a call");
      !sent.ok()) {
    return sent;
  }
  absl::MutexLock lock(&mu_);
  absl::Status got = ReadUntilLocked(
      [&]()
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return replies_.contains(id); },
      deadline, "the daemon did not answer the call on the fd channel in time");
  if (!got.ok()) {
    // It may still answer: give back what that answer grants.
    if (absl::IsDeadlineExceeded(got)) abandoned_.insert(id);
    return got;
  }
  auto it = replies_.find(id);
  fdchannel::Reply reply = std::move(it->second);
  replies_.erase(it);
  return reply;
}

absl::Status FdChannel::StatusOf(const fdchannel::Reply& reply) {
  return absl::Status(reply.code, reply.payload);
}

absl::Status FdChannel::ReadUntilLocked(const std::function<bool()>& ready,
                                        absl::Time deadline,
                                        absl::string_view late) {
  for (;;) {
    if (ready()) return absl::OkStatus();
    if (closed_ || !broken_.ok()) return GoneLocked();
    if (reading_) {
      // Another thread reads: wait for it to keep our item or to stop.
      auto turn = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !reading_ || ready();
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&turn), deadline)) {
        return absl::DeadlineExceededError(late);
      }
      continue;
    }
    // Take what is waiting first, and poll only if that was not it.
    if (ReadOneLocked()) continue;
    if (closed_ || !broken_.ok()) continue;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError(late);
    const int64_t wait_ms = std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
        std::numeric_limits<int>::max());
    reading_ = true;
    mu_.Unlock();
    pollfd p{socket_.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(wait_ms));
    mu_.Lock();
    reading_ = false;
  }
}

absl::Status FdChannel::GoneLocked() const {
  if (!broken_.ok()) return broken_;
  if (closing_text_.has_value()) {
    return absl::UnavailableError(
        absl::StrCat("the daemon closed the fd channel: ", *closing_text_));
  }
  return absl::UnavailableError(
      "the daemon closed the fd channel (daemon stopped?)");
}

bool FdChannel::ReadOneLocked() {
  if (closed_ || !broken_.ok()) return false;
  fdchannel::Frame frame;
  std::string payload;
  fdchannel::Received got =
      fdchannel::RecvFrame(socket_.get(), &frame, &payload, MSG_DONTWAIT);
  if (got.envelope.bytes < 0 &&
      (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return false;
  }
  if (got.envelope.bytes <= 0) {
    closed_ = true;
    return false;
  }
  absl::StatusOr<fdchannel::FromDaemon> message =
      fdchannel::DecodeFromDaemon(got.envelope, frame, payload);
  if (!message.ok()) {
    broken_ = message.status();
    return false;
  }
  if (const auto* text = std::get_if<fdchannel::ErrorText>(&*message)) {
    closing_text_ = text->text;
  } else if (const auto* grant = std::get_if<fdchannel::FdGrant>(&*message)) {
    unclaimed_[grant->grant_id] = std::move(got.fd);
  } else if (auto* reply = std::get_if<fdchannel::Reply>(&*message)) {
    if (abandoned_.erase(reply->id) == 0) {
      replies_[reply->id] = std::move(*reply);
    } else if (reply->code == absl::StatusCode::kOk && orphan_handler_) {
      if (const uint64_t grant_id = orphan_handler_(*reply); grant_id != 0) {
        unclaimed_.erase(grant_id);  // closes the fd, if it came
      }
    }
  }
  return true;
}

std::optional<std::string> FdChannel::ClosingText() {
  absl::MutexLock lock(&mu_);
  // Whatever the daemon sent before it hung up is waiting already: read it
  // without blocking (or, if another thread is the reader, leave it to it).
  ReadUntilLocked([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                      mu_) { return closing_text_.has_value(); },
                  absl::Now(), "")
      .IgnoreError();
  return closing_text_;
}

absl::Status FdChannel::SendWaiting(const fdchannel::Frame& frame,
                                    absl::string_view payload, int fd,
                                    absl::Time deadline,
                                    absl::string_view what) {
  for (;;) {
    const ssize_t sent =
        fdchannel::SendMessage(socket_.get(), frame, payload, fd, MSG_DONTWAIT);
    if (fdchannel::SentWhole(sent, payload.size())) break;
    if (sent >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      return absl::UnavailableError(
          absl::StrCat("sending ", what, " on the fd channel failed: ",
                       sent < 0 ? std::strerror(errno) : "short write"));
    }
    // Full: the daemon reads its channels all the time, so room comes.
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{socket_.get(), POLLOUT, 0};
    if (wait_ms <= 0 || ::poll(&p, 1, static_cast<int>(wait_ms)) == 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the daemon did not read the fd channel while sending ", what));
    }
  }
  frames_sent_.fetch_add(1);
  return absl::OkStatus();
}

absl::Status FdChannel::Present(uint64_t handle, uint64_t lease, int fd,
                                absl::Time deadline) {
  return SendWaiting(fdchannel::Encode(fdchannel::Present{handle, lease}), {},
                     fd, deadline, absl::StrCat("buffer ", handle));
}

bool FdChannel::Send(const fdchannel::FromClient& message) {
  const fdchannel::Frame frame =
      std::visit([](const auto& m) { return fdchannel::Encode(m); }, message);
  if (!fdchannel::SentWhole(
          fdchannel::SendFrame(socket_.get(), frame, -1, MSG_DONTWAIT))) {
    return false;
  }
  frames_sent_.fetch_add(1);
  return true;
}

}  // namespace shmbroker::client
