#include "client/src/grants.h"

#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "client/src/proto_convert.h"
#include "client/src/test_hooks.h"

namespace shmbroker::client {

absl::StatusOr<Buffer> Grants::Allocate(
    const std::shared_ptr<Connection>& connection,
    const v1::AllocateRequest& request, absl::Duration wait) {
  absl::StatusOr<Buffer> buffer =
      Finish(connection, Send(connection, &v1::Broker::Stub::Allocate,
                              fdchannel::CallMethod::kAllocate, request,
                              "allocate_reply", wait));
  connection->TrimArenas(/*only_if_many=*/true);
  return buffer;
}

absl::StatusOr<Buffer> Grants::Attach(
    const std::shared_ptr<Connection>& connection,
    const v1::AttachRequest& request, absl::Duration wait) {
  absl::StatusOr<Buffer> buffer =
      Finish(connection, Send(connection, &v1::Broker::Stub::Attach,
                              fdchannel::CallMethod::kAttach, request,
                              "attach_reply", wait));
  connection->TrimArenas(/*only_if_many=*/true);
  return buffer;
}

template <typename Request, typename Response>
absl::StatusOr<Grants::Outcome> Grants::Send(
    const std::shared_ptr<Connection>& connection,
    UnaryMethod<v1::Broker::Stub, Request, Response> method,
    fdchannel::CallMethod fd_method, const Request& request,
    const char* pause_point, absl::Duration wait) {
  absl::ReaderMutexLock grants(&connection->arenas().grants_mu());
  std::optional<absl::StatusOr<Response>> on_fd_channel =
      connection->CallOnFdChannel<Response>(fd_method, request, wait);
  absl::StatusOr<Response> reply =
      on_fd_channel.has_value() ? *std::move(on_fd_channel)
                                : connection->Call(method, request, wait);
  if (!reply.ok()) return reply.status();
  PausePoint(pause_point);
  return Claim(connection, reply->buffer(), reply->grant());
}

absl::StatusOr<Buffer> Grants::Finish(
    const std::shared_ptr<Connection>& connection,
    absl::StatusOr<Outcome> outcome) {
  if (!outcome.ok()) return outcome.status();
  const auto* missing = std::get_if<ArenaFdMissing>(&*outcome);
  if (missing == nullptr) return std::get<Buffer>(std::move(*outcome));
  bool forgotten = false;
  {
    // Exclusive, as for a Trim: no grant in flight relies on the arena.
    absl::MutexLock grants(&connection->arenas().grants_mu());
    forgotten = connection->ForgetArena(
        missing->arena_id, missing->mode == v1::ACCESS_MODE_READ_WRITE);
  }
  if (!forgotten) return GiveUp(*connection, *missing);
  v1::AttachRequest again;
  again.set_handle(missing->handle);
  again.set_mode(missing->mode);
  again.set_lease_id(missing->lease);
  absl::StatusOr<Outcome> retried =
      Send(connection, &v1::Broker::Stub::Attach,
           fdchannel::CallMethod::kAttach, again, "attach_reply");
  connection->ReleaseAsync(missing->handle, missing->lease);  // the first hold
  if (!retried.ok()) return retried.status();
  if (const auto* still = std::get_if<ArenaFdMissing>(&*retried)) {
    return GiveUp(*connection, *still);
  }
  return std::get<Buffer>(std::move(*retried));
}

absl::StatusOr<Grants::Outcome> Grants::Claim(
    const std::shared_ptr<Connection>& connection, const v1::Buffer& info,
    const v1::Grant& grant) {
  if (info.kind() == v1::BUFFER_KIND_POOLED) {
    return ClaimPooled(connection, info, grant);
  }
  absl::StatusOr<UniqueFd> fd = connection->TakeFd(grant.grant_id());
  if (!fd.ok()) {
    connection->ReleaseAsync(info.handle(), grant.lease_id());
    return fd.status();
  }
  const bool writable = grant.mode() == v1::ACCESS_MODE_READ_WRITE;
  const int raw_fd = fd->get();
  // The Buffer owns fd and hold from here on, so a failed map releases both.
  Buffer buffer(connection, FromProto(info), grant.lease_id(), fd->release(),
                {});
  absl::StatusOr<Mapping> mapping =
      Mapping::Map(raw_fd, grant.offset(), info.size(), writable);
  if (!mapping.ok()) return mapping.status();
  buffer.SetMapping(std::move(*mapping));
  return buffer;
}

absl::StatusOr<Grants::Outcome> Grants::ClaimPooled(
    const std::shared_ptr<Connection>& connection, const v1::Buffer& info,
    const v1::Grant& grant) {
  const bool writable = grant.mode() == v1::ACCESS_MODE_READ_WRITE;
  ArenaCache& arenas = connection->arenas();
  absl::StatusOr<std::shared_ptr<const ArenaMapping>> arena;
  if (grant.grant_id() != 0) {
    absl::StatusOr<UniqueFd> fd = connection->TakeFd(grant.grant_id());
    if (fd.ok()) {
      arena = arenas.Adopt(info.arena_id(), writable, std::move(*fd),
                           grant.segment_size());
    } else {
      arena = fd.status();
    }
  } else if (auto cached = arenas.Find(info.arena_id(), writable)) {
    arena = std::move(cached);
  } else {
    return ArenaFdMissing{info.handle(), grant.lease_id(), grant.mode(),
                          info.arena_id()};
  }
  if (arena.ok() && info.offset() + info.size() > (*arena)->mapping().size()) {
    arena = absl::InternalError(
        absl::StrFormat("buffer %d at offset %d does not fit in arena %d",
                        info.handle(), info.offset(), info.arena_id()));
  }
  if (!arena.ok()) {
    connection->ReleaseAsync(info.handle(), grant.lease_id());
    return arena.status();
  }
  return Buffer(connection, FromProto(info), grant.lease_id(),
                std::move(*arena), writable);
}

absl::Status Grants::GiveUp(Connection& connection,
                            const ArenaFdMissing& missing) {
  connection.ReleaseAsync(missing.handle, missing.lease);
  return absl::InternalError(absl::StrFormat(
      "the daemon sent no fd for arena %d and it is not mapped here",
      missing.arena_id));
}

}  // namespace shmbroker::client
