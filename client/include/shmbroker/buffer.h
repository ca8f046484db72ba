// Buffer: one hold on a shared-memory buffer, mapped into this process.
//
// Destroying a Buffer unmaps it and releases its hold with a one-way message
// on the fd channel (no round trip; the daemon applies it before this
// client's next call). Release() does the same synchronously and reports
// errors. The hold is under a lease (lease_id()); if the daemon ended that
// lease, lease_status() and Release() say so: the memory stays mapped here,
// but the daemon no longer counts this hold. A read-only Buffer's memory is
// mapped PROT_READ from an O_RDONLY fd. A pooled Buffer (kind()) points into
// its arena, which this client maps once for all its buffers there; it
// behaves like a dedicated one, except that fd() is the arena's and the
// buffer starts at offset() in it. Move-only; a Buffer may outlive its
// Client (its release then happens when the connection closes). It keeps
// working across a daemon restart when the library resumes (docs/api.md,
// "Restart"). Not thread-safe.
#ifndef SHMBROKER_CLIENT_BUFFER_H_
#define SHMBROKER_CLIENT_BUFFER_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "shmbroker/mapping.h"
#include "shmbroker/types.h"

namespace shmbroker::client {

class Connection;
class ArenaMapping;
class Grants;

class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool read_only() const { return !writable_; }
  uint64_t handle() const { return info_.handle; }
  const BufferInfo& info() const { return info_; }
  Kind kind() const { return info_.kind; }
  // The fd of the memory the buffer is in (owned by the Buffer, or for a
  // pooled buffer by its arena mapping, which the Buffer keeps alive), e.g.
  // to pass on or map again: the buffer is at offset() in it.
  int fd() const;
  uint64_t offset() const { return info_.offset; }
  bool valid() const { return connection_ != nullptr; }
  uint64_t lease_id() const { return lease_id_; }
  // OK while the lease holding this buffer lives; else why it was lost.
  absl::Status lease_status() const;

  // Unmaps and drops the hold now, waiting for the daemon's answer; fails
  // with the loss when the lease was lost.
  absl::Status Release();
  // Seals the buffer: it is complete, immutable from now on, and handed to
  // whoever waits for its seal (Client::AttachWhen). A dedicated buffer's
  // writable mapping is given up first (the kernel refuses to seal memory
  // that any process maps writable) and the buffer is mapped again
  // read-only, so data() changes; after that nobody, root included, can
  // write its pages. FAILED_PRECONDITION while another process maps it
  // writable (the buffer stays mapped as it was). A pooled buffer stays
  // where it is: the daemon grants it read-only from now on, but this
  // owner's processes map its arena writable (docs/api.md, "Seal"). Its
  // seal costs no round trip: Seal returns once a one-way message is sent,
  // which the daemon applies before this client's next call or exit; it
  // can fail after that only if the hold is lost first (on_lease_lost).
  absl::Status Seal();
  // Unmaps and closes locally but leaves the hold in the daemon, under its
  // lease: with a detached lease, the buffer outlives this process for the
  // lease's TTL (the producer's half of a handoff).
  void Disown();

 private:
  friend class Grants;  // makes Buffers from the daemon's grants
  Buffer(std::shared_ptr<Connection> connection, BufferInfo info,
         uint64_t lease_id, int fd, Mapping mapping);
  Buffer(std::shared_ptr<Connection> connection, BufferInfo info,
         uint64_t lease_id, std::shared_ptr<const ArenaMapping> arena,
         bool writable);
  void SetMapping(Mapping mapping);
  void CloseLocal();

  std::shared_ptr<Connection> connection_;
  BufferInfo info_;
  uint64_t lease_id_ = 0;
  int fd_ = -1;                                // dedicated
  Mapping mapping_;                            // dedicated
  std::shared_ptr<const ArenaMapping> arena_;  // pooled
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool writable_ = false;
  // Its entry in the connection's hold table (0: none), which lets the
  // library present this buffer's memory to a restarted daemon.
  uint64_t hold_id_ = 0;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_BUFFER_H_
