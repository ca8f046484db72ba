#include "client/src/connection.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/src/resumer.h"
#include "client/src/test_hooks.h"
#include "common/default_socket.h"
#include "common/fd_channel_protocol.h"

namespace shmbroker::client {

std::shared_ptr<const ArenaMapping> ArenaCache::Find(uint64_t arena_id,
                                                     bool writable) {
  absl::MutexLock lock(&mu_);
  auto it = arenas_.find(Key(arena_id, writable));
  return it == arenas_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<const ArenaMapping>> ArenaCache::Adopt(
    uint64_t arena_id, bool writable, UniqueFd fd, uint64_t size) {
  if (std::shared_ptr<const ArenaMapping> cached = Find(arena_id, writable)) {
    return cached;
  }
  // Map without the lock: a 64 MiB mmap is cheap, but it is a syscall.
  absl::StatusOr<Mapping> mapping = Mapping::Map(fd.get(), 0, size, writable);
  if (!mapping.ok()) return mapping.status();
  auto arena = std::make_shared<const ArenaMapping>(arena_id, std::move(fd),
                                                    std::move(*mapping));
  absl::MutexLock lock(&mu_);
  return arenas_.emplace(Key(arena_id, writable), arena).first->second;
}

size_t ArenaCache::size() {
  absl::MutexLock lock(&mu_);
  return arenas_.size();
}

size_t ArenaCache::Trim(const std::function<bool(uint64_t, bool)>& forget) {
  absl::MutexLock grants(&grants_mu_);
  std::vector<std::shared_ptr<const ArenaMapping>> dropped;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = arenas_.begin(); it != arenas_.end();) {
      const bool writable = it->first % 2 == 1;
      // use_count is exact here: Buffers copy it only under grants_mu_
      // (shared), which Trim holds exclusively.
      if (it->second.use_count() == 1 &&
          (!forget || forget(it->second->id(), writable))) {
        dropped.push_back(std::move(it->second));
        arenas_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  return dropped.size();  // unmapped and closed as `dropped` goes
}

absl::StatusOr<std::shared_ptr<Connection>> Connection::Open(
    const ClientOptions& options) {
  std::shared_ptr<Connection> c(new Connection());
  c->socket_path_ =
      options.socket_path.empty() ? DefaultSocketPath() : options.socket_path;
  c->timeout_ = options.timeout;
  c->calls_on_fd_channel_ = options.calls_on_fd_channel;
  if (options.open_client_connection) {
    absl::StatusOr<std::unique_ptr<FdChannel>> fd_channel =
        FdChannel::Open(c->socket_path_, c->timeout_);
    if (!fd_channel.ok()) return fd_channel.status();
    c->AdoptOrphans(**fd_channel);
    absl::MutexLock lock(&c->mu_);
    c->fd_channel_ = std::move(*fd_channel);
  }
  // Each Client gets its own connection, as separate processes would;
  // otherwise gRPC shares one subchannel among all Clients of a process.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A restarted daemon is back within tens of milliseconds on a local
  // socket: gRPC's default reconnect backoff (1 s, growing to 2 min) would
  // keep calls failing long after.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Despite its name, how long one connection attempt may wait for the
  // daemon's first HTTP/2 frame. gRPC makes it at least 100 ms, which is
  // what 20 ms here gave: on a busy node (64 clients starting at once on
  // two cores) the handshake took longer, and calls failed UNAVAILABLE
  // ("no daemon answering") at once. An attempt now gets as long as a call.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(std::clamp<int64_t>(
                  absl::ToInt64Milliseconds(c->timeout_), 100, 3'600'000)));
  c->channel_ =
      grpc::CreateCustomChannel(absl::StrCat("unix:", c->socket_path_),
                                grpc::InsecureChannelCredentials(), args);
  c->stub_ = v1::Broker::NewStub(c->channel_);
  if (options.open_client_connection) {
    Connection* raw = c.get();  // the keeper dies first, inside *c
    c->keeper_ = std::make_unique<LeaseKeeper>(
        c->stub_.get(),
        [raw](grpc::ClientContext* ctx) { raw->PrepareStream(ctx); },
        options.on_lease_lost,
        [raw]() -> std::optional<std::string> {
          std::shared_ptr<FdChannel> channel = raw->fd_channel();
          if (channel == nullptr) return std::nullopt;
          return channel->ClosingText();
        });
    c->keeper_->Track(c->default_lease(), absl::ZeroDuration());
    if (options.resume_after_restart) {
      c->resume_ = true;
      c->resumer_ = std::make_unique<Resumer>(raw, options.on_resumed);
    }
  }
  return c;
}

Connection::~Connection() {
  resumer_.reset();  // before the keeper it pauses and resumes
  keeper_.reset();
}

std::shared_ptr<FdChannel> Connection::fd_channel() const {
  absl::MutexLock lock(&mu_);
  return fd_channel_;
}

uint64_t Connection::default_lease() const {
  std::shared_ptr<FdChannel> channel = fd_channel();
  return channel == nullptr ? 0 : channel->hello().default_lease;
}

void Connection::SetDaemonAway(bool away) {
  absl::MutexLock lock(&mu_);
  daemon_away_ = away;
}

void Connection::AdoptOrphans(FdChannel& channel) {
  // The handler lives in the channel, so `raw` outlives it.
  FdChannel* raw = &channel;
  channel.SetOrphanHandler([raw](const fdchannel::Reply& reply) {
    // Both responses that come on the fd channel are a Buffer and a Grant.
    v1::AttachResponse granted;
    if (!granted.ParseFromString(reply.payload)) return uint64_t{0};
    // One-way on the channel that granted it; if that fails the hold stays
    // until its lease ends (the Release RPC could wait on a resume here,
    // under the channel's lock).
    raw->Send(fdchannel::Release{granted.buffer().handle(),
                                 granted.grant().lease_id()});
    return granted.grant().grant_id();
  });
}

absl::Status Connection::FdChannelStatus(const absl::Status& status) const {
  if (status.code() != absl::StatusCode::kUnavailable) return status;
  return absl::UnavailableError(absl::StrFormat(
      "no daemon answering at %s: %s", socket_path_, status.message()));
}

void Connection::SwapFdChannel(std::shared_ptr<FdChannel> channel) {
  AdoptOrphans(*channel);
  arenas_.Trim(nullptr);
  absl::MutexLock lock(&mu_);
  fd_channel_ = std::move(channel);
  daemon_away_ = false;
}

std::vector<fdchannel::Release> Connection::TakePendingReleases() {
  absl::MutexLock lock(&mu_);
  return std::exchange(pending_releases_, {});
}

bool Connection::KeepForResume(uint64_t handle, uint64_t lease) {
  if (!resume_ || handle == 0) return false;
  absl::MutexLock lock(&mu_);
  pending_releases_.push_back(fdchannel::Release{handle, lease});
  return true;
}

absl::Status Connection::LeaseStatus(uint64_t lease) const {
  return keeper_ == nullptr ? absl::OkStatus() : keeper_->LeaseStatus(lease);
}

void Connection::PrepareStream(grpc::ClientContext* ctx) const {
  if (std::shared_ptr<FdChannel> channel = fd_channel()) {
    ctx->AddMetadata(fdchannel::kConnectionTokenKey, channel->token_hex());
  }
}

void Connection::Prepare(grpc::ClientContext* ctx, absl::Duration wait) const {
  PrepareOn(fd_channel().get(), ctx, wait);
}

void Connection::PrepareOn(const FdChannel* channel, grpc::ClientContext* ctx,
                           absl::Duration wait) const {
  if (channel != nullptr) {
    ctx->AddMetadata(fdchannel::kConnectionTokenKey, channel->token_hex());
    ctx->AddMetadata(fdchannel::kFramesSentKey,
                     absl::StrCat(channel->frames_sent()));
  }
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout_ + wait));
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

size_t Connection::TrimArenas(bool only_if_many) {
  if (only_if_many && arenas_.size() <= kMaxIdleArenas) return 0;
  return arenas_.Trim([this](uint64_t arena_id, bool writable) {
    return ForgetArena(arena_id, writable);
  });
}

absl::StatusOr<UniqueFd> Connection::TakeFd(uint64_t grant_id) {
  std::shared_ptr<FdChannel> channel = fd_channel();
  if (channel == nullptr) {
    return absl::FailedPreconditionError(
        "no fd channel: open_client_connection is off");
  }
  return channel->TakeFd(grant_id, absl::Now() + timeout_);
}

void Connection::ReleaseAsync(uint64_t handle, uint64_t lease) {
  if (!LeaseStatus(lease).ok()) return;
  std::shared_ptr<FdChannel> channel;
  {
    absl::MutexLock lock(&mu_);
    if (daemon_away_) {
      // For the daemon that comes back, if one does (the hold may be in its
      // books, and another process may present the buffer).
      pending_releases_.push_back(fdchannel::Release{handle, lease});
      return;
    }
    channel = fd_channel_;
  }
  if (channel != nullptr && channel->Send(fdchannel::Release{handle, lease})) {
    PausePoint("release_sent");
    return;
  }
  // A full channel (or a daemon that is gone): ask over gRPC instead; if that
  // fails too, the hold goes when its lease ends.
  ReleaseSync(handle, "", lease).IgnoreError();
}

absl::StatusOr<uint32_t> Connection::ReleaseSync(uint64_t handle,
                                                 const std::string& name,
                                                 uint64_t lease) {
  if (absl::Status lost = LeaseStatus(lease); !lost.ok()) return lost;
  {
    // While the library resumes after a daemon restart, the hold is the
    // new daemon's only once the connection is swapped: wait for that
    // (within the call timeout) rather than send it under the dead token.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](bool* away) { return !*away; }, &daemon_away_),
                         timeout_);
  }
  if (absl::Status lost = LeaseStatus(lease); !lost.ok()) return lost;
  v1::ReleaseRequest request;
  request.set_handle(handle);
  request.set_name(name);
  request.set_lease_id(lease);
  absl::StatusOr<v1::ReleaseResponse> response =
      Call(&v1::Broker::Stub::Release, request);
  if (!response.ok()) {
    // The daemon may be restarting: release this hold once it is back.
    if (response.status().code() == absl::StatusCode::kUnavailable) {
      KeepForResume(handle, lease);
    }
    return response.status();
  }
  return response->holders();
}

bool Connection::SealAsync(uint64_t handle) {
  std::shared_ptr<FdChannel> channel = fd_channel();
  return channel != nullptr && channel->Send(fdchannel::Seal{handle});
}

bool Connection::ForgetArena(uint64_t arena_id, bool writable) {
  // On failure the arena stays cached; a later Trim can try again.
  std::shared_ptr<FdChannel> channel = fd_channel();
  return channel != nullptr &&
         channel->Send(fdchannel::ForgetArena{{arena_id, writable}});
}

}  // namespace shmbroker::client
