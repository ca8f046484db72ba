#include "python/src/watcher.h"

#include <cmath>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "python/src/status.h"

namespace shmbroker::python {

namespace py = pybind11;
using client::WatchEvent;

namespace {

constexpr absl::Duration kSlice = absl::Milliseconds(100);

// The next event before `deadline`, or DEADLINE_EXCEEDED; waits without the
// GIL, a slice at a time, and raises KeyboardInterrupt (or whatever a signal
// handler raised) between slices.
absl::StatusOr<WatchEvent> NextBefore(
    const std::shared_ptr<client::Watcher>& watcher, absl::Time deadline) {
  for (;;) {
    const absl::Time until = std::min(deadline, absl::Now() + kSlice);
    absl::StatusOr<WatchEvent> event;
    {
      py::gil_scoped_release unlocked;
      event = watcher->Next(until);
    }
    if (event.ok() ||
        event.status().code() != absl::StatusCode::kDeadlineExceeded ||
        absl::Now() >= deadline) {
      return event;
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

}  // namespace

PyWatcher::~PyWatcher() {
  std::shared_ptr<client::Watcher> closing = std::move(watcher_);
  py::gil_scoped_release unlocked;  // the destructor waits for the stream
  closing.reset();
}

py::object PyWatcher::Next(const py::object& timeout) {
  absl::Time deadline = absl::InfiniteFuture();
  if (!timeout.is_none()) {
    const double seconds = timeout.cast<double>();
    if (!(seconds >= 0)) {
      Raise(PyExc_ValueError, "timeout must be a non-negative number");
    }
    deadline = absl::Now() + absl::Seconds(seconds);
  }
  absl::StatusOr<WatchEvent> event = NextBefore(watcher_, deadline);
  if (!event.ok() &&
      event.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return py::none();
  }
  return py::cast(Unwrap(std::move(event)));
}

WatchEvent PyWatcher::NextForIteration() {
  absl::StatusOr<WatchEvent> event =
      NextBefore(watcher_, absl::InfiniteFuture());
  if (!event.ok() && event.status().code() == absl::StatusCode::kCancelled) {
    throw py::stop_iteration();
  }
  return Unwrap(std::move(event));
}

void PyWatcher::Cancel() {
  py::gil_scoped_release unlocked;
  watcher_->Cancel();
}

void PyWatcher::Bind(py::module_& m) {
  py::class_<WatchEvent>(m, "WatchEvent", R"doc(
One change seen by a Watcher: `type` ('created', 'sealed', 'released' or
'lost'), `revision`, `buffer` (a BufferInfo right after the change; None
for 'lost') and `reason` (why a 'released' buffer's last hold went:
'released', 'client_gone', 'lease_expired', 'lease_revoked', 'shutdown' or
'not_resumed'; None otherwise). 'lost' is a stream's last event: the watcher fell behind
and missed the changes from `revision` on; list again.)doc")
      .def_property_readonly("type",
                             [](const WatchEvent& e) {
                               return client::WatchEventTypeName(e.type);
                             })
      .def_readonly("revision", &WatchEvent::revision)
      .def_property_readonly("buffer",
                             [](const WatchEvent& e) -> py::object {
                               if (e.type == WatchEvent::Type::kLost) {
                                 return py::none();
                               }
                               return py::cast(e.buffer);
                             })
      .def_property_readonly(
          "reason",
          [](const WatchEvent& e) -> py::object {
            if (e.reason == WatchEvent::Reason::kNone) {
              return py::none();
            }
            return py::str(client::ReleaseReasonName(e.reason));
          })
      .def("__repr__", [](const WatchEvent& e) {
        return "<WatchEvent " + std::string(WatchEventTypeName(e.type)) +
               " revision=" + std::to_string(e.revision) + " name='" +
               e.buffer.name + "'>";
      });

  py::class_<PyWatcher>(m, "Watcher", R"doc(
A Watch stream (Client.watch): iterate over it for WatchEvents, in order,
each with its revision. Ends when cancelled; a stream that ends otherwise
raises its error. A context manager: leaving the block cancels it.)doc")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &PyWatcher::NextForIteration)
      .def("next", &PyWatcher::Next, py::arg("timeout") = py::none(),
           "The next WatchEvent, or None when `timeout` seconds pass.")
      .def("cancel", &PyWatcher::Cancel,
           "Ends the stream; iteration then stops.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyWatcher& w, py::args) {
        w.Cancel();
        return false;
      });
}

}  // namespace shmbroker::python
