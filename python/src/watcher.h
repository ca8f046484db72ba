// shmbroker.Watcher and shmbroker.WatchEvent: a Watch stream
// (shmbroker/watcher.h) as a Python iterator. Each step waits for the next
// event without the GIL, in slices of 100 ms so that Ctrl-C (a pending
// signal) interrupts it. The iterator ends (StopIteration) when the watch is
// cancelled; a stream that ends otherwise raises its error (after a 'lost'
// event: ResourceExhausted; when the daemon goes away: Unavailable).
// Called with the GIL held.
#ifndef SHMBROKER_PYTHON_SRC_WATCHER_H_
#define SHMBROKER_PYTHON_SRC_WATCHER_H_

#include <pybind11/pybind11.h>

#include <memory>

#include "shmbroker/watcher.h"

namespace shmbroker::python {

class PyWatcher {
 public:
  explicit PyWatcher(std::unique_ptr<client::Watcher> watcher)
      : watcher_(std::move(watcher)) {}
  ~PyWatcher();

  // The next event; None when `timeout` (seconds; None: no limit) passes.
  pybind11::object Next(const pybind11::object& timeout);
  // As Next without a timeout, for iteration: StopIteration once cancelled.
  client::WatchEvent NextForIteration();
  void Cancel();

  // Binds WatchEvent and Watcher into `m`.
  static void Bind(pybind11::module_& m);

 private:
  std::shared_ptr<client::Watcher> watcher_;
};

}  // namespace shmbroker::python

#endif  // SHMBROKER_PYTHON_SRC_WATCHER_H_
