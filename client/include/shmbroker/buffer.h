// Buffer: one hold on a shared-memory buffer, mapped into this process.
//
// Destroying a Buffer unmaps it and releases its hold with a one-way message
// on the fd channel (no round trip; the daemon applies it before this
// client's next call). Release() does the same synchronously and reports
// errors. The hold is under a lease (lease_id()); if the daemon ended that
// lease, lease_status() and Release() say so: the memory stays mapped here,
// but the daemon no longer counts this hold. A read-only Buffer's memory is
// mapped PROT_READ from an O_RDONLY fd. Move-only; a Buffer may outlive its
// Client (its release then happens when the connection closes). Not
// thread-safe.
#ifndef SHMBROKER_CLIENT_BUFFER_H_
#define SHMBROKER_CLIENT_BUFFER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "shmbroker/mapping.h"
#include "shmbroker/types.h"

namespace shmbroker::client {

class Connection;

class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer();

  uint8_t* data() const { return mapping_.data(); }
  size_t size() const { return mapping_.size(); }
  bool read_only() const { return !mapping_.writable(); }
  uint64_t handle() const { return info_.handle; }
  const BufferInfo& info() const { return info_; }
  // The buffer's fd (owned by the Buffer), e.g. to pass on or map again.
  int fd() const { return fd_; }
  bool valid() const { return connection_ != nullptr; }
  uint64_t lease_id() const { return lease_id_; }
  // OK while the lease holding this buffer lives; else why it was lost.
  absl::Status lease_status() const;

  // Unmaps and drops the hold now, waiting for the daemon's answer; fails
  // with the loss when the lease was lost.
  absl::Status Release();
  // Unmaps and closes locally but leaves the hold in the daemon, under its
  // lease: with a detached lease, the buffer outlives this process for the
  // lease's TTL (the producer's half of a handoff).
  void Disown();

 private:
  friend class Client;
  Buffer(std::shared_ptr<Connection> connection, BufferInfo info,
         uint64_t lease_id, int fd, Mapping mapping);
  void CloseLocal();

  std::shared_ptr<Connection> connection_;
  BufferInfo info_;
  uint64_t lease_id_ = 0;
  int fd_ = -1;
  Mapping mapping_;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_BUFFER_H_
