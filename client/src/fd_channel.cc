#include "client/src/fd_channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/default_socket.h"
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
  for (;;) {
    if (auto it = unclaimed_.find(grant_id); it != unclaimed_.end()) {
      UniqueFd fd = std::move(it->second);
      unclaimed_.erase(it);
      return fd;
    }
    if (closing_text_.has_value()) {
      return absl::UnavailableError(
          absl::StrCat("the daemon closed the fd channel: ", *closing_text_));
    }
    // Try without blocking first, and poll only if the fd is not there.
    bool closed = false;
    absl::Status error;
    if (ReadOneLocked(&closed, &error)) continue;
    if (!error.ok()) return error;
    if (closed) {
      return absl::UnavailableError(
          "the daemon closed the fd channel (daemon stopped?)");
    }
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{socket_.get(), POLLIN, 0};
    if (wait_ms <= 0 || ::poll(&p, 1, static_cast<int>(wait_ms)) == 0) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "the fd for grant %d did not arrive on the fd channel", grant_id));
    }
  }
}

bool FdChannel::ReadOneLocked(bool* closed, absl::Status* error) {
  fdchannel::Frame frame;
  fdchannel::Received got =
      fdchannel::RecvFrame(socket_.get(), &frame, MSG_DONTWAIT);
  if (got.envelope.bytes < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return false;
  }
  if (got.envelope.bytes <= 0) {
    *closed = true;
    return false;
  }
  absl::StatusOr<fdchannel::FromDaemon> message =
      fdchannel::DecodeFromDaemon(got.envelope, frame);
  if (!message.ok()) {
    *error = message.status();
    return false;
  }
  if (const auto* text = std::get_if<fdchannel::ErrorText>(&*message)) {
    closing_text_ = text->text;
  } else if (const auto* grant = std::get_if<fdchannel::FdGrant>(&*message)) {
    unclaimed_[grant->grant_id] = std::move(got.fd);
  }
  return true;
}

std::optional<std::string> FdChannel::ClosingText() {
  absl::MutexLock lock(&mu_);
  bool closed = false;
  absl::Status error;
  while (!closing_text_.has_value() && ReadOneLocked(&closed, &error)) {
  }
  return closing_text_;
}

absl::Status FdChannel::Present(uint64_t handle, uint64_t lease, int fd,
                                absl::Time deadline) {
  const fdchannel::Frame frame =
      fdchannel::Encode(fdchannel::Present{handle, lease});
  for (;;) {
    const ssize_t sent =
        fdchannel::SendFrame(socket_.get(), frame, fd, MSG_DONTWAIT);
    if (fdchannel::SentWhole(sent)) break;
    if (sent >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      return absl::UnavailableError(absl::StrCat(
          "presenting buffer ", handle, " on the fd channel failed: ",
          sent < 0 ? std::strerror(errno) : "short write"));
    }
    // Full: the daemon reads its channels all the time, so room comes.
    const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    pollfd p{socket_.get(), POLLOUT, 0};
    if (wait_ms <= 0 || ::poll(&p, 1, static_cast<int>(wait_ms)) == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("the daemon did not read the fd channel while buffer ",
                       handle, " was presented"));
    }
  }
  frames_sent_.fetch_add(1);
  return absl::OkStatus();
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
