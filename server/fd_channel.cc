#include "server/fd_channel.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fd_channel_protocol.h"
#include "core/memory_object.h"
#include "server/logging.h"
#include "server/peer_credentials.h"

namespace shmbroker {
namespace {

using fdchannel::Frame;
using fdchannel::FrameType;

constexpr uint64_t kListenerTag = 0;
constexpr uint64_t kWakeTag = ~uint64_t{0};

void SendError(int sock, const std::string& message) {
  fdchannel::SendFrame(sock, fdchannel::MakeErrorFrame(message), -1,
                       MSG_DONTWAIT);
}

}  // namespace

FdChannel::FdChannel(Registry* registry, int listener, Metrics* metrics,
                     ReclaimLatencies* latencies)
    : registry_(registry),
      listener_(listener),
      metrics_(metrics),
      latencies_(latencies) {}

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
  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, session] : by_id_) sessions.push_back(session);
  }
  for (auto& session : sessions) {
    Close(session, CloseReason::kShutdown, "daemon stopping");
  }
}

void FdChannel::Run() {
  epoll_event events[64];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("fd channel: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) return;
      if (tag == kListenerTag) {
        Accept();
        continue;
      }
      std::shared_ptr<Session> session = FindById(tag);
      if (session == nullptr) continue;
      // Input, hang-up or error: draining tells which (EOF reads as 0).
      Drain(*session).IgnoreError();
    }
  }
}

void FdChannel::Accept() {
  for (;;) {
    UniqueFd sock(
        ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!sock.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        spdlog::error("fd channel: accept: {}", std::strerror(errno));
      }
      return;
    }
    absl::StatusOr<Identity> identity = PeerCredentials(sock.get());
    if (!identity.ok()) {
      spdlog::warn("fd channel: {}", identity.status().ToString());
      continue;
    }
    absl::StatusOr<ClientId> client = registry_->OpenClient(*identity);
    if (!client.ok()) {
      spdlog::warn("fd channel: refused pid {} uid {}: {}", identity->pid,
                   identity->uid, client.status().message());
      SendError(sock.get(), client.status().ToString());
      continue;
    }
    absl::StatusOr<LeaseInfo> lease = registry_->DefaultLease(*client);
    if (!lease.ok()) {  // only if it ended already: a daemon bug
      spdlog::error("fd channel: {}", lease.status().ToString());
      registry_->CloseClient(*client);
      continue;
    }
    auto session = std::make_shared<Session>();
    session->client = *client;
    session->default_lease = lease->id;
    session->identity = *identity;
    Frame hello = fdchannel::MakeFrame(FrameType::kHello, 0, lease->id);
    if (::getrandom(hello.token, sizeof(hello.token), 0) !=
        static_cast<ssize_t>(sizeof(hello.token))) {
      spdlog::error("fd channel: getrandom: {}", std::strerror(errno));
      registry_->CloseClient(*client);
      continue;
    }
    session->token_hex = fdchannel::TokenToHex(hello.token);
    {
      absl::MutexLock lock(&mu_);
      session->id = next_session_++;
      by_id_[session->id] = session;
      by_token_[session->token_hex] = session;
      by_client_[session->client] = session;
    }
    hello.id = session->id;
    session->socket = std::move(sock);
    epoll_event event{EPOLLIN | EPOLLRDHUP, {.u64 = session->id}};
    if (fdchannel::SendFrame(session->socket.get(), hello, -1, MSG_DONTWAIT) !=
            static_cast<ssize_t>(sizeof(hello)) ||
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, session->socket.get(),
                    &event) != 0) {
      Close(session, CloseReason::kHangup,
            absl::StrFormat("setup failed: %s", std::strerror(errno)));
      continue;
    }
    metrics_->ClientOpened();
    spdlog::debug("client connection {} opened: pid {} uid {} gid {}",
                  session->id, identity->pid, identity->uid, identity->gid);
  }
}

absl::Status FdChannel::DrainIfBehind(Session& session,
                                      std::optional<uint64_t> releases_sent) {
  if (releases_sent && *releases_sent <= session.releases_applied.load() &&
      !session.closed.load()) {
    return absl::OkStatus();
  }
  return Drain(session, releases_sent);
}

absl::Status FdChannel::Drain(Session& session,
                              std::optional<uint64_t> releases_sent) {
  if (session.closed.load()) {
    return absl::FailedPreconditionError("client connection is closed");
  }
  std::string error;
  DrainResult result;
  {
    absl::MutexLock lock(&session.read_mu);
    result = DrainLocked(session, releases_sent, &error);
  }
  if (result == DrainResult::kOk) return absl::OkStatus();
  std::shared_ptr<Session> shared = FindById(session.id);
  if (result == DrainResult::kProtocolError) {
    spdlog::warn("client connection {} (pid {} uid {}): {}", session.id,
                 session.identity.pid, session.identity.uid, error);
    SendError(session.socket.get(), error);
  }
  if (shared != nullptr) {
    Close(shared,
          result == DrainResult::kProtocolError ? CloseReason::kProtocolError
                                                : CloseReason::kHangup,
          error);
  }
  return absl::FailedPreconditionError(
      absl::StrCat("client connection closed: ", error));
}

FdChannel::DrainResult FdChannel::DrainLocked(
    Session& session, std::optional<uint64_t> releases_sent,
    std::string* error) {
  for (;;) {
    // The client sent its frames before the call, and the socket keeps
    // them in order: once that many are applied, skip the final recvmsg
    // that would only say EAGAIN (one syscall less per call after a
    // release).
    if (releases_sent.has_value() &&
        session.releases_applied.load() >= *releases_sent) {
      return DrainResult::kOk;
    }
    Frame frame;
    fdchannel::Received got =
        fdchannel::RecvFrame(session.socket.get(), &frame, MSG_DONTWAIT);
    // Never keep a descriptor a client sends.
    for (int i = 0; i < got.fd_count; ++i) ::close(got.fds[i]);
    if (got.bytes < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return DrainResult::kOk;
      if (errno == EINTR) continue;
      *error = absl::StrFormat("receive failed: %s", std::strerror(errno));
      return DrainResult::kClosed;
    }
    if (got.bytes == 0) {
      *error = "peer closed the fd channel";
      return DrainResult::kClosed;
    }
    if (got.fd_count > 0 || (got.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        got.bytes != static_cast<ssize_t>(sizeof(Frame)) ||
        !fdchannel::HasValidHeader(frame) ||
        (frame.type != FrameType::kRelease &&
         frame.type != FrameType::kForgetArena)) {
      *error = absl::StrFormat(
          "protocol error on the fd channel: expected a %d-byte release or "
          "forget-arena frame without descriptors, got %d bytes%s",
          sizeof(Frame), got.bytes,
          got.fd_count > 0 ? " with descriptors" : "");
      return DrainResult::kProtocolError;
    }
    if (frame.type == FrameType::kForgetArena) {
      {
        absl::MutexLock lock(&session.send_mu);
        session.arenas_sent.erase(frame.id * 2 + (frame.handle != 0 ? 1 : 0));
      }
      session.releases_applied.fetch_add(1);
      continue;
    }
    session.releases_applied.fetch_add(1);
    absl::StatusOr<uint32_t> released = registry_->Release(
        session.client, BufferRef::ByHandle(frame.id), frame.handle);
    if (!released.ok()) {
      spdlog::warn("client connection {}: release over the fd channel: {}",
                   session.id, released.status().message());
    }
  }
}

absl::StatusOr<uint64_t> FdChannel::SendFd(Session& session, Handle handle,
                                           int fd) {
  absl::MutexLock lock(&session.send_mu);
  return SendFdLocked(session, handle, fd);
}

absl::StatusOr<uint64_t> FdChannel::SendArenaFd(Session& session, Handle handle,
                                                uint64_t arena_id,
                                                bool writable, int fd) {
  const uint64_t key = arena_id * 2 + (writable ? 1 : 0);
  // Under send_mu, so that concurrent grants in one arena send it once.
  absl::MutexLock lock(&session.send_mu);
  if (session.arenas_sent.contains(key)) return 0;
  absl::StatusOr<uint64_t> grant = SendFdLocked(session, handle, fd);
  if (grant.ok()) session.arenas_sent.insert(key);
  return grant;
}

absl::StatusOr<uint64_t> FdChannel::SendFdLocked(Session& session,
                                                 Handle handle, int fd) {
  if (session.closed.load()) {
    return absl::FailedPreconditionError("client connection is closed");
  }
  uint64_t grant = session.next_grant.fetch_add(1);
  Frame frame = fdchannel::MakeFrame(FrameType::kFd, grant, handle);
  if (fdchannel::SendFrame(session.socket.get(), frame, fd, MSG_DONTWAIT) ==
      static_cast<ssize_t>(sizeof(frame))) {
    return grant;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "fd channel of client connection %d is full: the client is not "
        "receiving its descriptors",
        session.id));
  }
  return absl::FailedPreconditionError(
      absl::StrFormat("cannot send fd to client connection %d: %s", session.id,
                      std::strerror(errno)));
}

void FdChannel::Close(const std::shared_ptr<Session>& session,
                      CloseReason reason, const std::string& why) {
  if (session->closed.exchange(true)) return;
  const absl::Time noticed = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    by_id_.erase(session->id);
    by_token_.erase(session->token_hex);
    by_client_.erase(session->client);
  }
  if (session->socket.valid()) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, session->socket.get(), nullptr);
    ::shutdown(session->socket.get(), SHUT_RDWR);
  }
  CloseResult result = registry_->CloseClient(
      session->client, reason == CloseReason::kShutdown
                           ? ReclaimReason::kShutdown
                           : ReclaimReason::kClientClosed);
  const absl::Duration reclaim = absl::Now() - noticed;
  metrics_->ClientClosed(reason, result.holds_dropped > 0, reclaim);
  if (result.holds_dropped > 0 && reason != CloseReason::kShutdown) {
    latencies_->connection_close.Add(reclaim);
  }
  auto level =
      result.holds_dropped > 0 ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level,
              "client connection {} (pid {} uid {}) closed ({}): dropped {} "
              "holds, reclaimed {} buffers ({} bytes) in {}",
              session->id, session->identity.pid, session->identity.uid, why,
              result.holds_dropped, result.buffers_reclaimed,
              result.bytes_reclaimed, absl::FormatDuration(reclaim));
}

void FdChannel::Hangup(ClientId client, const std::string& why) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_client_.find(client);
    if (it == by_client_.end()) return;
    session = it->second;
  }
  SendError(session->socket.get(),
            absl::StrCat("shmbrokerd closed this client connection: ", why));
  Close(session, CloseReason::kLeaseEnded, why);
}

std::shared_ptr<Session> FdChannel::Find(const std::string& token_hex) const {
  absl::MutexLock lock(&mu_);
  auto it = by_token_.find(token_hex);
  return it == by_token_.end() ? nullptr : it->second;
}

std::shared_ptr<Session> FdChannel::FindById(uint64_t id) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace shmbroker
