#include "shmbroker/buffer.h"

#include <unistd.h>

#include <utility>

#include "client/src/connection.h"
#include "client/src/test_hooks.h"

namespace shmbroker::client {

Buffer::Buffer(std::shared_ptr<Connection> connection, BufferInfo info,
               uint64_t lease_id, int fd, Mapping mapping)
    : connection_(std::move(connection)),
      info_(std::move(info)),
      lease_id_(lease_id),
      fd_(fd) {
  SetMapping(std::move(mapping));
  hold_id_ = connection_->holds().Register(info_.handle, lease_id_, fd_);
}

Buffer::Buffer(std::shared_ptr<Connection> connection, BufferInfo info,
               uint64_t lease_id, std::shared_ptr<const ArenaMapping> arena,
               bool writable)
    : connection_(std::move(connection)),
      info_(std::move(info)),
      lease_id_(lease_id),
      arena_(std::move(arena)),
      data_(arena_->mapping().data() + info_.offset),
      size_(info_.size),
      writable_(writable) {
  hold_id_ =
      connection_->holds().Register(info_.handle, lease_id_, arena_->fd());
}

void Buffer::SetMapping(Mapping mapping) {
  mapping_ = std::move(mapping);
  data_ = mapping_.data();
  size_ = mapping_.size();
  writable_ = mapping_.writable();
}

int Buffer::fd() const { return arena_ != nullptr ? arena_->fd() : fd_; }

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (connection_ != nullptr) {
      CloseLocal();
      std::exchange(connection_, nullptr)
          ->ReleaseAsync(info_.handle, lease_id_);
    }
    connection_ = std::exchange(other.connection_, nullptr);
    info_ = std::move(other.info_);
    lease_id_ = other.lease_id_;
    fd_ = std::exchange(other.fd_, -1);
    mapping_ = std::move(other.mapping_);
    arena_ = std::move(other.arena_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    writable_ = std::exchange(other.writable_, false);
    hold_id_ = std::exchange(other.hold_id_, 0);
  }
  return *this;
}

Buffer::~Buffer() {
  if (connection_ == nullptr) return;
  CloseLocal();
  connection_->ReleaseAsync(info_.handle, lease_id_);
}

void Buffer::CloseLocal() {
  // First: the table may duplicate the fd until then.
  connection_->holds().Unregister(std::exchange(hold_id_, 0));
  mapping_.Unmap();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  arena_.reset();  // the arena stays mapped in the cache for reuse
  data_ = nullptr;
  size_ = 0;
}

absl::Status Buffer::Release() {
  if (connection_ == nullptr) {
    return absl::FailedPreconditionError("buffer already released");
  }
  CloseLocal();
  std::shared_ptr<Connection> connection = std::exchange(connection_, nullptr);
  return connection->ReleaseSync(info_.handle, "", lease_id_).status();
}

absl::Status Buffer::Seal() {
  if (connection_ == nullptr) {
    return absl::FailedPreconditionError("buffer already released");
  }
  if (info_.sealed) return absl::OkStatus();
  // A pooled buffer is sealed in the daemon's books alone, so nothing but a
  // lost hold can make that fail: one-way, no round trip for the producer
  // (docs/api.md, "Seal").
  if (arena_ != nullptr && writable_) {
    if (absl::Status lost = connection_->LeaseStatus(lease_id_); !lost.ok()) {
      return lost;
    }
    if (connection_->SealAsync(info_.handle)) {
      PausePoint("seal_reply");
      info_.sealed = true;
      return absl::OkStatus();
    }
  }
  const bool remap = arena_ == nullptr && writable_;
  if (remap) mapping_.Unmap();
  v1::SealRequest request;
  request.set_handle(info_.handle);
  absl::StatusOr<v1::SealResponse> sealed =
      connection_->Call(&v1::Broker::Stub::Seal, request);
  if (sealed.ok()) PausePoint("seal_reply");
  if (remap) {
    // Read-only once sealed; as it was if sealing failed.
    absl::StatusOr<Mapping> again =
        Mapping::Map(fd_, 0, info_.size, /*writable=*/!sealed.ok());
    if (!again.ok()) {
      data_ = nullptr;
      size_ = 0;
      return again.status();
    }
    SetMapping(std::move(*again));
  }
  if (!sealed.ok()) return sealed.status();
  info_.sealed = true;
  if (arena_ == nullptr) writable_ = false;
  return absl::OkStatus();
}

absl::Status Buffer::lease_status() const {
  if (connection_ == nullptr) {
    return absl::FailedPreconditionError("buffer already released");
  }
  return connection_->LeaseStatus(lease_id_);
}

void Buffer::Disown() {
  if (connection_ == nullptr) return;
  CloseLocal();
  connection_ = nullptr;
}

}  // namespace shmbroker::client
