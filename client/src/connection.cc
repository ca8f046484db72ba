#include "client/src/connection.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/src/test_hooks.h"
#include "common/default_socket.h"
#include "common/fd_channel_protocol.h"

namespace shmbroker::client {

absl::StatusOr<std::shared_ptr<Connection>> Connection::Open(
    const ClientOptions& options) {
  std::shared_ptr<Connection> c(new Connection());
  c->socket_path_ =
      options.socket_path.empty() ? DefaultSocketPath() : options.socket_path;
  c->timeout_ = options.timeout;
  if (options.open_client_connection) {
    absl::StatusOr<std::unique_ptr<FdChannel>> fd_channel =
        FdChannel::Open(c->socket_path_, c->timeout_);
    if (!fd_channel.ok()) return fd_channel.status();
    c->fd_channel_ = std::move(*fd_channel);
    c->token_hex_ = fdchannel::TokenToHex(c->fd_channel_->hello().token);
  }
  // Each Client gets its own connection, as separate processes would;
  // otherwise gRPC shares one subchannel among all Clients of a process.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  c->channel_ =
      grpc::CreateCustomChannel(absl::StrCat("unix:", c->socket_path_),
                                grpc::InsecureChannelCredentials(), args);
  c->stub_ = v1::Broker::NewStub(c->channel_);
  if (c->fd_channel_ != nullptr) {
    Connection* raw = c.get();  // the keeper dies first, inside *c
    c->keeper_ = std::make_unique<LeaseKeeper>(
        c->stub_.get(),
        [raw](grpc::ClientContext* ctx) { raw->PrepareStream(ctx); },
        options.on_lease_lost);
    c->keeper_->Track(c->default_lease(), absl::ZeroDuration());
  }
  return c;
}

uint64_t Connection::default_lease() const {
  return fd_channel_ == nullptr ? 0 : fd_channel_->hello().default_lease;
}

absl::Status Connection::LeaseStatus(uint64_t lease) const {
  return keeper_ == nullptr ? absl::OkStatus() : keeper_->LeaseStatus(lease);
}

void Connection::PrepareStream(grpc::ClientContext* ctx) const {
  if (fd_channel_ != nullptr) {
    ctx->AddMetadata(fdchannel::kConnectionTokenKey, token_hex_);
  }
}

void Connection::Prepare(grpc::ClientContext* ctx, absl::Duration wait) const {
  PrepareStream(ctx);
  if (fd_channel_ != nullptr) {
    ctx->AddMetadata(fdchannel::kFramesSentKey,
                     absl::StrCat(fd_channel_->frames_sent()));
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

absl::StatusOr<UniqueFd> Connection::TakeFd(uint64_t grant_id) {
  if (fd_channel_ == nullptr) {
    return absl::FailedPreconditionError(
        "no fd channel: open_client_connection is off");
  }
  return fd_channel_->TakeFd(grant_id, absl::Now() + timeout_);
}

void Connection::ReleaseAsync(uint64_t handle, uint64_t lease) {
  if (!LeaseStatus(lease).ok()) return;
  if (fd_channel_ != nullptr &&
      fd_channel_->Send(fdchannel::Release{handle, lease})) {
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
  v1::ReleaseRequest request;
  request.set_handle(handle);
  request.set_name(name);
  request.set_lease_id(lease);
  absl::StatusOr<v1::ReleaseResponse> response =
      Call(&v1::Broker::Stub::Release, request);
  if (!response.ok()) return response.status();
  return response->holders();
}

bool Connection::ForgetArena(uint64_t arena_id, bool writable) {
  // On failure the arena stays cached; a later Trim can try again.
  return fd_channel_ != nullptr &&
         fd_channel_->Send(fdchannel::ForgetArena{{arena_id, writable}});
}

}  // namespace shmbroker::client
