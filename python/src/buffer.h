// shmbroker.Buffer: one mapped hold on a broker buffer, exporting the
// buffer protocol (memoryview, numpy.frombuffer, torch.frombuffer see its
// pages, no copy).
//
// Lifetime: the mapping (the C++ Buffer) lives while the Buffer object
// does, and while any exported view does. numpy.frombuffer keeps the Buffer
// object itself (array.base); memoryview and torch.frombuffer keep the
// export's `obj`, a small view object that shares the mapping. release()
// of a Buffer that never exported its memory is immediate; once exported,
// it is deferred: the Buffer refuses new views and use at once, and the
// memory is unmapped and the hold dropped when the Buffer object and every
// view are gone. Likewise seal() refuses a writable dedicated Buffer once
// exported (sealing maps it again elsewhere). A Buffer keeps its Client's
// connection alive, so closing the Client never unmaps memory under a view.
// A mapping left in a fork()ed child is never unmapped or released from
// there. Called with the GIL held; blocking calls release it.
#ifndef SHMBROKER_PYTHON_SRC_BUFFER_H_
#define SHMBROKER_PYTHON_SRC_BUFFER_H_

#include <pybind11/pybind11.h>
#include <sys/types.h>

#include <memory>

#include "shmbroker/client.h"

namespace shmbroker::python {

class PyBuffer {
 public:
  PyBuffer(std::shared_ptr<client::Client> client, client::Buffer buffer);
  ~PyBuffer();
  PyBuffer(const PyBuffer&) = delete;
  PyBuffer& operator=(const PyBuffer&) = delete;

  const client::BufferInfo& info() const { return info_; }
  bool writable() const { return writable_; }
  // Released, or its release deferred until the last view goes.
  bool released() const { return mapping_ == nullptr; }
  // Exported views (memoryview, tensor) alive, after release() too; numpy
  // arrays hold the Buffer object instead and are not counted.
  long exports() const {
    return weak_.use_count() - (mapping_ != nullptr ? 1 : 0) -
           (deferred_ != nullptr ? 1 : 0);
  }
  bool exported() const { return exported_; }
  // Where the memory is mapped here (0 once released).
  uintptr_t address() const;
  uint64_t lease_id() const { return lease_id_; }

  // True when released now, false when deferred to the last view's end.
  bool Release();
  // See Buffer::Seal. BufferError for a writable dedicated buffer that
  // exported its memory (sealing maps it again, elsewhere).
  void Seal();
  // Copies `data` (any buffer-protocol object) in at `offset`, without
  // exporting this Buffer's memory (so it can still be sealed).
  void Write(const pybind11::buffer& data, int64_t offset);
  // The sender's half of pickling by reference: a second hold on this
  // buffer under the detached transfer lease `lease_id` that nobody renews,
  // or (0, or that lease ended) a new one of `ttl_seconds`. Returns
  // ((socket, handle, lease id, writable, size, sender euid), the new
  // lease's TTL in seconds or 0 when `lease_id` was used).
  pybind11::tuple Transfer(double ttl_seconds, uint64_t lease_id);

  // Binds the class into `m`, with the buffer-protocol slots below.
  static void Bind(pybind11::module_& m);

 private:
  static int GetBuffer(PyObject* self, Py_buffer* view, int flags);
  // The mapping, unless released (ValueError naming `what` was refused)
  // or being sealed by another thread.
  client::Buffer& Mapped(const char* what);

  std::shared_ptr<client::Client> client_;
  std::shared_ptr<client::Buffer> mapping_;   // null once released
  std::weak_ptr<client::Buffer> weak_;        // alive while views are
  std::shared_ptr<client::Buffer> deferred_;  // released with views alive
  bool exported_ = false;
  client::BufferInfo info_;  // kept after release, for name/handle/...
  uint64_t lease_id_ = 0;
  bool writable_ = false;
  bool sealing_ = false;  // Seal() runs without the GIL
  pid_t pid_ = 0;         // the process that mapped it
};

// Keeps `object` alive until the process exits, never destroying it: what
// a fork()ed child does with its parent's mappings and connections.
void LeakInChild(std::shared_ptr<void> object);

}  // namespace shmbroker::python

#endif  // SHMBROKER_PYTHON_SRC_BUFFER_H_
