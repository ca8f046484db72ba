#include "client/src/connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/default_socket.h"
#include "common/fd_channel_io.h"
#include "common/fd_channel_protocol.h"

namespace shmbroker::client {
namespace {

using fdchannel::Frame;

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

absl::StatusOr<std::shared_ptr<Connection>> Connection::Open(
    const ClientOptions& options) {
  std::shared_ptr<Connection> c(new Connection());
  c->socket_path_ =
      options.socket_path.empty() ? DefaultSocketPath() : options.socket_path;
  c->timeout_ = options.timeout;
  if (options.open_session) {
    if (absl::Status s = c->Handshake(); !s.ok()) return s;
  }
  // Each Client gets its own connection, as separate processes would;
  // otherwise gRPC shares one subchannel among all Clients of a process.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  c->channel_ =
      grpc::CreateCustomChannel(absl::StrCat("unix:", c->socket_path_),
                                grpc::InsecureChannelCredentials(), args);
  c->stub_ = v1::Broker::NewStub(c->channel_);
  if (options.open_session) {
    Connection* raw = c.get();  // the keeper dies first, inside *c
    c->keeper_ = std::make_unique<LeaseKeeper>(
        c->stub_.get(),
        [raw](grpc::ClientContext* ctx) { raw->PrepareStream(ctx); },
        options.on_lease_lost);
    c->keeper_->Track(c->default_lease_, absl::ZeroDuration());
  }
  return c;
}

absl::Status Connection::Handshake() {
  const std::string path = FdChannelPath(socket_path_);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  fd_channel_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd_channel_.valid()) return ConnectError(errno, socket_path_);
  if (::connect(fd_channel_.get(), reinterpret_cast<sockaddr*>(&addr),
                sizeof(addr)) != 0) {
    return ConnectError(errno, socket_path_);
  }
  pollfd p{fd_channel_.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout_))) !=
      1) {
    return absl::DeadlineExceededError(absl::StrCat(
        "daemon at ", socket_path_, " did not greet on the fd channel"));
  }
  Frame frame;
  fdchannel::Received got = fdchannel::RecvFrame(fd_channel_.get(), &frame, 0);
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
  token_hex_ = fdchannel::TokenToHex(hello->token);
  default_lease_ = hello->default_lease;
  return absl::OkStatus();
}

void Connection::PrepareStream(grpc::ClientContext* ctx) const {
  if (!token_hex_.empty()) {
    ctx->AddMetadata(fdchannel::kConnectionTokenKey, token_hex_);
  }
}

absl::Status Connection::LeaseStatus(uint64_t lease) const {
  return keeper_ == nullptr ? absl::OkStatus() : keeper_->LeaseStatus(lease);
}

void Connection::Prepare(grpc::ClientContext* ctx) const {
  if (!token_hex_.empty()) {
    ctx->AddMetadata(fdchannel::kConnectionTokenKey, token_hex_);
    ctx->AddMetadata(fdchannel::kFramesSentKey,
                     absl::StrCat(frames_sent_.load()));
  }
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
}

absl::Status Connection::ToStatus(const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  if (code == absl::StatusCode::kUnavailable) {
    return absl::UnavailableError(absl::StrFormat(
        "no daemon answering at %s: %s", socket_path_, status.error_message()));
  }
  return absl::Status(code, status.error_message());
}

absl::StatusOr<UniqueFd> Connection::TakeFd(uint64_t grant_id) {
  if (!fd_channel_.valid()) {
    return absl::FailedPreconditionError("no fd channel: open_session is off");
  }
  absl::MutexLock lock(&fd_mu_);
  const absl::Time deadline = absl::Now() + timeout_;
  for (;;) {
    if (auto it = unclaimed_.find(grant_id); it != unclaimed_.end()) {
      UniqueFd fd = std::move(it->second);
      unclaimed_.erase(it);
      return fd;
    }
    // The daemon sends the fd before it replies, so it is normally already
    // waiting: try without blocking first, and poll only if it is not.
    Frame frame;
    fdchannel::Received got =
        fdchannel::RecvFrame(fd_channel_.get(), &frame, MSG_DONTWAIT);
    if (got.envelope.bytes < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      pollfd p{fd_channel_.get(), POLLIN, 0};
      if (wait_ms <= 0 || ::poll(&p, 1, static_cast<int>(wait_ms)) == 0) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "the fd for grant %d did not arrive on the fd channel", grant_id));
      }
      continue;
    }
    if (got.envelope.bytes <= 0) {
      return absl::UnavailableError(
          "the daemon closed the fd channel (daemon stopped?)");
    }
    absl::StatusOr<fdchannel::FromDaemon> message =
        fdchannel::DecodeFromDaemon(got.envelope, frame);
    if (!message.ok()) return message.status();
    if (const auto* error = std::get_if<fdchannel::ErrorText>(&*message)) {
      return absl::UnavailableError(
          absl::StrCat("the daemon closed the fd channel: ", error->text));
    }
    if (const auto* grant = std::get_if<fdchannel::FdGrant>(&*message)) {
      unclaimed_[grant->grant_id] = std::move(got.fd);
    }
  }
}

void Connection::ReleaseAsync(uint64_t handle, uint64_t lease) {
  if (!LeaseStatus(lease).ok()) return;
  if (fd_channel_.valid() &&
      fdchannel::SentWhole(fdchannel::SendFrame(
          fd_channel_.get(),
          fdchannel::Encode(fdchannel::Release{handle, lease}), -1,
          MSG_DONTWAIT))) {
    frames_sent_.fetch_add(1);
    return;
  }
  // A full channel (or a daemon that is gone): ask over gRPC instead; if that
  // fails too, the hold goes when its lease ends.
  ReleaseSync(handle, "", lease).IgnoreError();
}

bool Connection::ForgetArena(uint64_t arena_id, bool writable) {
  const fdchannel::ForgetArena forget{{arena_id, writable}};
  if (!fd_channel_.valid() ||
      !fdchannel::SentWhole(fdchannel::SendFrame(
          fd_channel_.get(), fdchannel::Encode(forget), -1, MSG_DONTWAIT))) {
    return false;  // keep it; a later Trim can try again
  }
  frames_sent_.fetch_add(1);
  return true;
}

absl::StatusOr<uint32_t> Connection::ReleaseSync(uint64_t handle,
                                                 const std::string& name,
                                                 uint64_t lease) {
  if (absl::Status lost = LeaseStatus(lease); !lost.ok()) return lost;
  grpc::ClientContext ctx;
  Prepare(&ctx);
  v1::ReleaseRequest request;
  request.set_handle(handle);
  request.set_name(name);
  request.set_lease_id(lease);
  v1::ReleaseResponse response;
  if (absl::Status s = ToStatus(stub_->Release(&ctx, request, &response));
      !s.ok()) {
    return s;
  }
  return response.holders();
}

BufferInfo FromProto(const v1::Buffer& b) {
  BufferInfo info;
  info.handle = b.handle();
  info.name = b.name();
  info.size = b.size();
  info.backing =
      b.backing() == v1::BACKING_POSIX ? Backing::kPosix : Backing::kMemfd;
  info.owner_uid = b.owner_uid();
  info.owner_gid = b.owner_gid();
  info.owner_pid = b.owner_pid();
  info.holders = b.holders();
  info.created = absl::FromUnixSeconds(b.created().seconds()) +
                 absl::Nanoseconds(b.created().nanos());
  for (const v1::ShareRule& r : b.share()) {
    ShareRule rule;
    rule.scope = r.scope() == v1::SHARE_SCOPE_UID   ? ShareRule::Scope::kUid
                 : r.scope() == v1::SHARE_SCOPE_GID ? ShareRule::Scope::kGid
                                                    : ShareRule::Scope::kAll;
    rule.id = r.id();
    rule.read_write = r.mode() == v1::ACCESS_MODE_READ_WRITE;
    info.share.push_back(rule);
  }
  info.shm_name = b.shm_name();
  info.charged_bytes = b.charged_bytes();
  info.kind =
      b.kind() == v1::BUFFER_KIND_POOLED ? Kind::kPooled : Kind::kDedicated;
  info.arena_id = b.arena_id();
  info.offset = b.offset();
  return info;
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

LeaseInfo FromProto(const v1::Lease& l) {
  LeaseInfo info;
  info.id = l.id();
  info.ttl = FromProto(l.ttl());
  info.granted_ttl = FromProto(l.granted_ttl());
  info.detached = l.detached();
  info.connection_default = l.connection_default();
  info.holds = l.holds();
  info.owner_pid = l.owner_pid();
  info.owner_uid = l.owner_uid();
  info.owner_gid = l.owner_gid();
  info.connected = l.connected();
  info.granted = absl::FromUnixSeconds(l.granted().seconds()) +
                 absl::Nanoseconds(l.granted().nanos());
  return info;
}

}  // namespace shmbroker::client
