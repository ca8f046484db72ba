#include "server/fd_channel.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/errno_status.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"
#include "server/log_rate_limiter.h"
#include "server/logging.h"
#include "server/peer_credentials.h"

namespace shmbroker {
namespace {

constexpr uint64_t kListenerTag = 0;
constexpr uint64_t kWakeTag = ~uint64_t{0};
// How long a connection over its frame rate is not read from: long enough
// for its bucket to refill a batch (200 frames at the default rate), short
// enough that a burst-then-quiet client barely notices.
constexpr absl::Duration kFramePause = absl::Milliseconds(10);

}  // namespace

void FdChannel::SendError(int sock, const std::string& message) {
  fdchannel::SendFrame(sock, fdchannel::Encode(fdchannel::ErrorText{message}),
                       -1, MSG_DONTWAIT);
}

FdChannel::FdChannel(Registry* registry, int listener, Metrics* metrics,
                     ReclaimLatencies* latencies, uint32_t keepalive_per_second,
                     uint32_t frames_per_second,
                     std::function<void(bool)> on_accept_blocked)
    : registry_(registry),
      listener_(listener),
      metrics_(metrics),
      latencies_(latencies),
      keepalive_per_second_(keepalive_per_second),
      frames_per_second_(frames_per_second),
      out_of_fds_("fd_channel", metrics, std::move(on_accept_blocked)),
      closer_(registry, metrics, latencies) {}

FdChannel::~FdChannel() { Stop(); }

absl::Status FdChannel::Start() {
  int flags = ::fcntl(listener_, F_GETFL);
  if (flags < 0 || ::fcntl(listener_, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoToStatus(errno, "fd channel listener O_NONBLOCK");
  }
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return ErrnoToStatus(errno, "epoll_create1");
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_.valid()) return ErrnoToStatus(errno, "eventfd");
  epoll_event listen_event{EPOLLIN, {.u64 = kListenerTag}};
  epoll_event wake_event{EPOLLIN, {.u64 = kWakeTag}};
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_, &listen_event) != 0 ||
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &wake_event) != 0) {
    return ErrnoToStatus(errno, "epoll_ctl");
  }
  closer_.Start();
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void FdChannel::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    if (::write(wake_.get(), &one, sizeof(one)) < 0) {
      spdlog::error("fd channel: cannot wake the event loop: {}",
                    std::strerror(errno));
    }
    thread_.join();
  }
  std::vector<std::shared_ptr<ClientConnection>> open;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, connection] : by_id_) open.push_back(connection);
  }
  for (auto& connection : open) {
    SendError(connection->socket.get(),
              "shmbrokerd is stopping: this client connection ends (a client "
              "library resumes it if the daemon restarts)");
    Close(connection, CloseReason::kShutdown, "daemon stopping");
  }
  closer_.Stop();  // once every connection is ended
}

void FdChannel::Run() {
  epoll_event events[64];
  for (;;) {
    absl::Time wake_at = ResumePaused();
    if (out_of_fds_.blocked()) wake_at = std::min(wake_at, retry_accept_at_);
    int timeout_ms = -1;
    if (wake_at != absl::InfiniteFuture()) {
      const absl::Duration left = wake_at - absl::Now();
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0,
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)))));
    }
    int n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("fd channel: epoll_wait: {}", std::strerror(errno));
      return;
    }
    if (out_of_fds_.blocked() && absl::Now() >= retry_accept_at_) {
      RetryAccepting();
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) return;
      if (tag == kListenerTag) {
        Accept();
        continue;
      }
      if (std::shared_ptr<ClientConnection> connection = FindById(tag)) {
        OnEvent(*connection, events[i].events);
      }
    }
  }
}

void FdChannel::OnEvent(ClientConnection& connection, uint32_t events) {
  // Input, hang-up or error: reading tells which (EOF reads as 0). A
  // client that hung up is read to the end at once, throttled or not: what
  // it sent last is applied before its connection ends.
  const bool hung_up = (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) != 0;
  bool throttled = false;
  ApplyPending(connection, std::nullopt, hung_up ? nullptr : &throttled)
      .IgnoreError();
  if (throttled && !connection.closed.load()) Pause(connection);
}

void FdChannel::Pause(ClientConnection& connection) {
  // Level-triggered: unread input would wake epoll_wait at once, for ever.
  // Watch only for its hang-up until the pause is over.
  epoll_event hangup_only{EPOLLRDHUP, {.u64 = connection.id}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, connection.socket.get(),
              &hangup_only);
  paused_[connection.id] = absl::Now() + kFramePause;
  metrics_->FramesThrottled();
  uint64_t suppressed = 0;
  if (AllowClientWarning(connection.warnings, &suppressed)) {
    spdlog::warn(
        "client connection {} (pid {} uid {}) sends frames faster than "
        "--max_frames_per_second ({}): not reading it for {}{}",
        connection.id, connection.identity.pid, connection.identity.uid,
        frames_per_second_, absl::FormatDuration(kFramePause),
        SuppressedNote(suppressed));
  }
}

absl::Time FdChannel::ResumePaused() {
  const absl::Time now = absl::Now();
  absl::Time next = absl::InfiniteFuture();
  for (auto it = paused_.begin(); it != paused_.end();) {
    if (it->second > now) {
      next = std::min(next, it->second);
      ++it;
      continue;
    }
    if (std::shared_ptr<ClientConnection> connection = FindById(it->first)) {
      epoll_event event{EPOLLIN | EPOLLRDHUP, {.u64 = connection->id}};
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, connection->socket.get(),
                  &event);
    }
    paused_.erase(it++);
  }
  return next;
}

void FdChannel::Accept() {
  for (;;) {
    UniqueFd socket(
        ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!socket.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        StopAccepting(errno);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::error("fd channel: accept: {}", std::strerror(errno));
      }
      return;
    }
    absl::StatusOr<std::shared_ptr<ClientConnection>> connection =
        Open(std::move(socket));
    if (!connection.ok()) continue;  // Open logged why
    metrics_->ClientOpened();
    spdlog::debug("client connection {} opened: pid {} uid {} gid {}",
                  (*connection)->id, (*connection)->identity.pid,
                  (*connection)->identity.uid, (*connection)->identity.gid);
  }
}

void FdChannel::StopAccepting(int err) {
  // Level-triggered: a waiting connection would wake epoll_wait at once,
  // for ever. Watch nothing on the listener until the backoff has passed.
  epoll_event none{0, {.u64 = kListenerTag}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listener_, &none);
  retry_accept_at_ = absl::Now() + out_of_fds_.OnOutOfFds(err);
  out_of_fds_.RefuseWaiting(
      listener_, [this](int fd) { SendError(fd, out_of_fds_.Why()); });
}

void FdChannel::RetryAccepting() {
  if (!out_of_fds_.Recovered()) {
    out_of_fds_.RefuseWaiting(
        listener_, [this](int fd) { SendError(fd, out_of_fds_.Why()); });
    retry_accept_at_ = absl::Now() + out_of_fds_.OnOutOfFds(EMFILE);
    return;
  }
  epoll_event listen_event{EPOLLIN, {.u64 = kListenerTag}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listener_, &listen_event);
  Accept();
}

absl::StatusOr<std::shared_ptr<ClientConnection>> FdChannel::Open(
    UniqueFd socket) {
  absl::StatusOr<Identity> identity = PeerCredentials(socket.get());
  uint64_t suppressed = 0;
  if (!identity.ok()) {
    if (LogRateLimits::Refusals().Allow(&suppressed)) {
      spdlog::warn("fd channel: {}{}", identity.status().ToString(),
                   SuppressedNote(suppressed));
    }
    return identity.status();
  }
  absl::StatusOr<ConnectionId> id = registry_->OpenConnection(*identity);
  if (!id.ok()) {
    metrics_->CountRefusal(id.status());
    if (LogRateLimits::Refusals().Allow(&suppressed)) {
      spdlog::warn("fd channel: refused pid {} uid {}: {}{}", identity->pid,
                   identity->uid, id.status().message(),
                   SuppressedNote(suppressed));
    }
    SendError(socket.get(), id.status().ToString());
    return id.status();
  }
  absl::StatusOr<LeaseInfo> lease = registry_->DefaultLease(*id);
  fdchannel::Hello hello;
  if (lease.ok() && ::getrandom(hello.token.data(), hello.token.size(), 0) !=
                        static_cast<ssize_t>(hello.token.size())) {
    lease = ErrnoToStatus(errno, "getrandom");
  }
  if (!lease.ok()) {
    spdlog::error("fd channel: {}", lease.status().ToString());
    registry_->CloseConnection(*id);
    return lease.status();
  }
  hello.connection_id = *id;
  hello.default_lease = lease->id;
  hello.features = fdchannel::kFeatureCalls;
  auto connection = std::make_shared<ClientConnection>(
      *id, lease->id, *identity, fdchannel::TokenToHex(hello.token),
      std::move(socket), keepalive_per_second_, frames_per_second_);
  {
    absl::MutexLock lock(&mu_);
    by_id_[connection->id] = connection;
    by_token_[connection->token_hex] = connection;
  }
  epoll_event event{EPOLLIN | EPOLLRDHUP, {.u64 = connection->id}};
  if (!fdchannel::SentWhole(fdchannel::SendFrame(connection->socket.get(),
                                                 fdchannel::Encode(hello), -1,
                                                 MSG_DONTWAIT)) ||
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, connection->socket.get(),
                  &event) != 0) {
    absl::Status failed = ErrnoToStatus(errno, "greeting the client");
    Close(connection, CloseReason::kHangup, std::string(failed.message()));
    return failed;
  }
  return connection;
}

absl::StatusOr<uint64_t> FdChannel::SendFd(ClientConnection& connection,
                                           Handle handle, int fd) {
  absl::MutexLock lock(&connection.send_mu);
  return SendFdLocked(connection, handle, fd);
}

absl::StatusOr<uint64_t> FdChannel::SendArenaFd(ClientConnection& connection,
                                                Handle handle,
                                                fdchannel::ArenaKey arena,
                                                int fd) {
  // Under send_mu, so that concurrent grants in one arena send it once.
  absl::MutexLock lock(&connection.send_mu);
  if (connection.arenas_sent.contains(arena)) return 0;
  absl::StatusOr<uint64_t> grant = SendFdLocked(connection, handle, fd);
  if (grant.ok()) connection.arenas_sent.insert(arena);
  return grant;
}

absl::StatusOr<uint64_t> FdChannel::SendFdLocked(ClientConnection& connection,
                                                 Handle handle, int fd) {
  const uint64_t grant = connection.next_grant.fetch_add(1);
  absl::Status sent = SendLocked(
      connection, fdchannel::Encode(fdchannel::FdGrant{grant, handle}), {}, fd,
      "descriptors");
  if (!sent.ok()) return sent;
  return grant;
}

absl::Status FdChannel::SendReply(ClientConnection& connection,
                                  const fdchannel::Reply& reply) {
  absl::MutexLock lock(&connection.send_mu);
  return SendLocked(connection, fdchannel::Encode(reply), reply.payload, -1,
                    "replies");
}

absl::Status FdChannel::SendLocked(ClientConnection& connection,
                                   const fdchannel::Frame& frame,
                                   absl::string_view payload, int fd,
                                   absl::string_view what) {
  if (connection.closed.load()) {
    return absl::FailedPreconditionError("client connection is closed");
  }
  // Never blocks: a client that does not read fills its socket, and the
  // caller (a gRPC thread or the reader) must not wait on it.
  if (fdchannel::SentWhole(
          fdchannel::SendMessage(connection.socket.get(), frame, payload, fd,
                                 MSG_DONTWAIT),
          payload.size())) {
    return absl::OkStatus();
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "fd channel of client connection %d is full: the client is not "
        "receiving its %s",
        connection.id, what));
  }
  return absl::FailedPreconditionError(
      absl::StrFormat("cannot send %s to client connection %d: %s", what,
                      connection.id, std::strerror(errno)));
}

void FdChannel::ServeCalls(FdCallHandler* handler) {
  absl::MutexLock lock(&calls_mu_);
  calls_ = handler;
}

void FdChannel::Close(const std::shared_ptr<ClientConnection>& connection,
                      CloseReason reason, const std::string& why) {
  if (connection->closed.exchange(true)) return;
  const absl::Time noticed = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    by_id_.erase(connection->id);
    by_token_.erase(connection->token_hex);
  }
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, connection->socket.get(), nullptr);
  ::shutdown(connection->socket.get(), SHUT_RDWR);
  // What it held is let go of off the event loop: that can take long.
  closer_.Close(connection, reason, why, noticed);
}

void FdChannel::Hangup(ConnectionId id, const std::string& why) {
  std::shared_ptr<ClientConnection> connection = FindById(id);
  if (connection == nullptr) return;
  SendError(connection->socket.get(),
            absl::StrCat(fdchannel::kClosedOnPurpose, ": ", why));
  Close(connection, CloseReason::kLeaseEnded, why);
}

std::shared_ptr<ClientConnection> FdChannel::Find(
    const std::string& token_hex) const {
  absl::MutexLock lock(&mu_);
  auto it = by_token_.find(token_hex);
  return it == by_token_.end() ? nullptr : it->second;
}

std::shared_ptr<ClientConnection> FdChannel::FindById(ConnectionId id) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace shmbroker
