#include "python/src/buffer.h"

#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "python/src/status.h"

namespace shmbroker::python {

namespace py = pybind11;

void LeakInChild(std::shared_ptr<void> object) {
  // Never destroyed: destroying would unmap or release what the parent
  // still owns (the fd channel socket is shared with it after fork).
  static auto* leaked = new std::vector<std::shared_ptr<void>>();
  leaked->push_back(std::move(object));
}

namespace {

// The `obj` of one exported Py_buffer: a share of the mapping, and the
// Buffer (so that arrays and tensors over it still find it, e.g. to pickle
// by reference).
struct View {
  std::shared_ptr<client::Buffer> mapping;
  py::object owner;
};

// Deletes the mapping (unmap, one-way release frame) in the process that
// made it; a fork()ed child keeps it instead, untouched.
std::shared_ptr<client::Buffer> Share(client::Buffer buffer) {
  const pid_t pid = ::getpid();
  return std::shared_ptr<client::Buffer>(
      new client::Buffer(std::move(buffer)), [pid](client::Buffer* b) {
        if (::getpid() == pid) {
          delete b;
        } else {
          LeakInChild(std::shared_ptr<client::Buffer>(b, [](auto*) {}));
        }
      });
}

}  // namespace

PyBuffer::PyBuffer(std::shared_ptr<client::Client> client,
                   client::Buffer buffer)
    : client_(std::move(client)),
      info_(buffer.info()),
      lease_id_(buffer.lease_id()),
      writable_(!buffer.read_only()),
      pid_(::getpid()) {
  mapping_ = Share(std::move(buffer));
  weak_ = mapping_;
}

PyBuffer::~PyBuffer() {
  // The last share of mapping_ sends the one-way release frame: no round
  // trip, so the GIL stays held (this may run during interpreter shutdown).
  // In a fork()ed child the Client stays untouched.
  if (::getpid() != pid_) LeakInChild(std::move(client_));
}

uintptr_t PyBuffer::address() const {
  std::shared_ptr<client::Buffer> mapping = weak_.lock();
  return mapping && !sealing_ ? reinterpret_cast<uintptr_t>(mapping->data())
                              : 0;
}

client::Buffer& PyBuffer::Mapped(const char* what) {
  if (sealing_) {
    Raise(PyExc_BufferError,
          absl::StrCat("cannot ", what, " buffer ", info_.handle,
                       ": another thread is sealing it"));
  }
  if (released()) {
    Raise(PyExc_ValueError,
          absl::StrCat("cannot ", what, " buffer ", info_.handle, " (\"",
                       info_.name, "\"): it is released"));
  }
  return *mapping_;
}

bool PyBuffer::Release() {
  if (released()) return false;
  Mapped("release");
  if (exported_) {
    // numpy arrays hold this object, not an export: unmapping must wait for
    // the object's end (and the views').
    deferred_ = std::move(mapping_);
    return false;
  }
  client::Buffer buffer = std::move(*mapping_);
  mapping_.reset();
  absl::Status status;
  {
    py::gil_scoped_release unlocked;
    status = buffer.Release();
  }
  ThrowIfError(status);
  return true;
}

void PyBuffer::Seal() {
  client::Buffer& mapped = Mapped("seal");
  if (exported_ && mapped.kind() == client::Kind::kDedicated && writable_) {
    Raise(PyExc_BufferError,
          absl::StrCat(
              "cannot seal buffer ", info_.handle, " (\"", info_.name,
              "\"): its memory was exported (memoryview, ndarray, tensor), "
              "and sealing maps a dedicated buffer again read-only, "
              "elsewhere; fill it with Buffer.write() or seal before making "
              "views, or use kind='pooled'"));
  }
  sealing_ = true;  // no new views while the GIL is released
  absl::Status status;
  {
    py::gil_scoped_release unlocked;
    status = mapped.Seal();
  }
  sealing_ = false;
  info_ = mapped.info();
  writable_ = !mapped.read_only();
  ThrowIfError(status);
}

void PyBuffer::Write(const py::buffer& data, int64_t offset) {
  client::Buffer& mapped = Mapped("write");
  if (!writable_) {
    Raise(PyExc_BufferError,
          absl::StrCat("buffer ", info_.handle, " is mapped read-only"));
  }
  py::buffer_info in = data.request();
  const int64_t length = in.size * in.itemsize;
  if (offset < 0 || length < 0 ||
      static_cast<uint64_t>(offset) + static_cast<uint64_t>(length) >
          mapped.size()) {
    Raise(PyExc_ValueError,
          absl::StrCat("cannot write ", length, " bytes at offset ", offset,
                       " into buffer ", info_.handle, " of ", mapped.size(),
                       " bytes"));
  }
  if (!PyBuffer_IsContiguous(in.view(), 'C')) {
    Raise(PyExc_BufferError, "write() needs C-contiguous data");
  }
  std::memcpy(mapped.data() + offset, in.ptr, static_cast<size_t>(length));
}

py::tuple PyBuffer::Transfer(double ttl_seconds, uint64_t lease_id) {
  // Views keep the hold after a deferred release: those pickle too.
  std::shared_ptr<client::Buffer> mapping = weak_.lock();
  if (!mapping) Mapped("pickle");  // raises: released
  const uint64_t handle = info_.handle;
  absl::Status status;
  double granted_seconds = 0;
  {
    py::gil_scoped_release unlocked;
    auto hold_under = [&](uint64_t lease) {
      absl::StatusOr<client::Buffer> held =
          client_->AttachHandle(handle, client::Access::kDefault, lease);
      if (held.ok()) held->Disown();  // the hold stays, under the lease
      return held.status();
    };
    // The transfer lease the caller reuses, unless it ended early (revoked):
    // then a new one.
    status = lease_id != 0 ? hold_under(lease_id)
                           : absl::NotFoundError("no transfer lease yet");
    if (absl::IsNotFound(status)) {
      absl::StatusOr<client::LeaseInfo> lease =
          client_->GrantLease(absl::Seconds(ttl_seconds), /*detached=*/true,
                              /*keep_alive=*/false);
      status = lease.status();
      if (lease.ok()) {
        lease_id = lease->id;
        granted_seconds = absl::ToDoubleSeconds(lease->ttl);
        status = hold_under(lease_id);
        if (!status.ok()) (void)client_->RevokeLease(lease_id);
      }
    }
  }
  ThrowIfError(status);
  return py::make_tuple(
      py::make_tuple(client_->socket_path(), handle, lease_id, writable_,
                     info_.size, static_cast<int64_t>(::geteuid())),
      granted_seconds);
}

int PyBuffer::GetBuffer(PyObject* self, Py_buffer* view, int flags) {
  try {
    PyBuffer* buffer = py::handle(self).cast<PyBuffer*>();
    client::Buffer& mapped = buffer->Mapped("view");
    buffer->exported_ = true;
    py::object holder = py::cast(
        View{buffer->mapping_, py::reinterpret_borrow<py::object>(self)});
    // view->obj becomes a new reference to the holder.
    return PyBuffer_FillInfo(view, holder.ptr(), mapped.data(),
                             static_cast<Py_ssize_t>(mapped.size()),
                             buffer->writable_ ? 0 : 1, flags);
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_BufferError, e.what());
  }
  view->obj = nullptr;
  return -1;
}

void PyBuffer::Bind(py::module_& m) {
  py::class_<PyBuffer> cls(m, "Buffer", py::buffer_protocol(), R"doc(
A mapped hold on a shared-memory buffer; made by Client.allocate/attach.

Exports the buffer protocol: memoryview(buf), numpy.frombuffer(buf) and
torch.frombuffer(buf) see its pages with no copy. Once exported, release()
is deferred until this object and every view are gone; the Buffer refuses
new views from then on. A context manager: leaving the block releases it.
Pickling it (multiprocessing, concurrent.futures) sends a reference, not
the bytes: see shmbroker.share.)doc");
  // pybind11's own slot would make view->obj the Buffer itself; this one
  // makes it a View that shares the mapping.
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  type->tp_as_buffer->bf_getbuffer = &PyBuffer::GetBuffer;
  type->tp_as_buffer->bf_releasebuffer = nullptr;
  py::class_<View>(m, "_View",
                   "What a view of a Buffer refers to: a share of its "
                   "mapping.")
      .def_property_readonly("buffer", [](const View& v) { return v.owner; });

  cls.def_property_readonly(
         "handle", [](const PyBuffer& b) { return b.info_.handle; },
         "The daemon's handle of the buffer.")
      .def_property_readonly(
          "name", [](const PyBuffer& b) { return b.info_.name; },
          "Its name ('' when unnamed).")
      .def_property_readonly(
          "size", [](const PyBuffer& b) { return b.info_.size; },
          "Usable bytes.")
      .def_property_readonly(
          "sealed", [](const PyBuffer& b) { return b.info_.sealed; },
          "Whether it is sealed (immutable).")
      .def_property_readonly(
          "kind",
          [](const PyBuffer& b) {
            return std::string(client::KindName(b.info_.kind));
          },
          "'dedicated' or 'pooled'.")
      .def_property_readonly("writable", &PyBuffer::writable,
                             "Whether this process maps it writable.")
      .def_property_readonly(
          "released", &PyBuffer::released,
          "Whether release() was called (it may wait for views to go).")
      .def_property_readonly("exports", &PyBuffer::exports,
                             "How many exported views (memoryview, tensor) "
                             "are alive; numpy arrays hold the Buffer "
                             "itself instead.")
      .def_property_readonly("exported", &PyBuffer::exported,
                             "Whether its memory was ever exported.")
      .def("write", &PyBuffer::Write, py::arg("data"), py::arg("offset") = 0,
           R"doc(
Copies `data` (bytes, an ndarray, any buffer) into it at byte `offset`,
without exporting its memory, so that a dedicated buffer can still be
sealed afterwards.)doc")
      .def_property_readonly("address", &PyBuffer::address,
                             "Where it is mapped in this process (0 once "
                             "released).")
      .def_property_readonly("lease", &PyBuffer::lease_id,
                             "The id of the lease its hold is under.")
      .def_property_readonly(
          "info", [](const PyBuffer& b) { return b.info_; },
          "The BufferInfo the daemon returned for it.")
      .def("release", &PyBuffer::Release, R"doc(
Unmaps it and drops the hold, now if its memory was never exported (True).
Once exported, deferred (False): it refuses new views at once, and is
unmapped and released when this object and every view (memoryview, ndarray,
tensor) are gone. Idempotent.)doc")
      .def("seal", &PyBuffer::Seal, R"doc(
Seals it: complete and immutable from now on, and handed to whoever waits
for its seal. BufferError for a writable dedicated buffer whose memory was
exported (it is mapped again read-only, elsewhere): fill it with write().)doc")
      .def("_transfer", &PyBuffer::Transfer, py::arg("ttl"), py::arg("lease"))
      .def_property_readonly(
          "_socket", [](const PyBuffer& b) { return b.client_->socket_path(); })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyBuffer& b, py::args) {
             b.Release();
             return false;
           })
      .def("__repr__", [](const PyBuffer& b) {
        return absl::StrCat("<shmbroker.Buffer handle=", b.info_.handle,
                            " name='", b.info_.name, "' size=", b.info_.size,
                            " kind=", client::KindName(b.info_.kind),
                            b.info_.sealed ? " sealed" : "",
                            b.released() ? " released" : "", ">");
      });
}

}  // namespace shmbroker::python
