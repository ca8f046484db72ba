#include "shmbroker/buffer.h"

#include <unistd.h>

#include <utility>

#include "client/src/connection.h"

namespace shmbroker::client {

Buffer::Buffer(std::shared_ptr<Connection> connection, BufferInfo info,
               uint64_t lease_id, int fd, Mapping mapping)
    : connection_(std::move(connection)),
      info_(std::move(info)),
      lease_id_(lease_id),
      fd_(fd),
      mapping_(std::move(mapping)) {}

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
  }
  return *this;
}

Buffer::~Buffer() {
  if (connection_ == nullptr) return;
  CloseLocal();
  connection_->ReleaseAsync(info_.handle, lease_id_);
}

void Buffer::CloseLocal() {
  mapping_.Unmap();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status Buffer::Release() {
  if (connection_ == nullptr) {
    return absl::FailedPreconditionError("buffer already released");
  }
  CloseLocal();
  std::shared_ptr<Connection> connection = std::exchange(connection_, nullptr);
  return connection->ReleaseSync(info_.handle, "", lease_id_).status();
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
