// shmbroker._native: the C++ client library for Python (pybind11). The
// Python package (python/shmbroker) re-exports it and adds the errors and
// pickling by reference.
#include <pybind11/pybind11.h>

#include "python/src/buffer.h"
#include "python/src/client.h"
#include "python/src/types.h"
#include "python/src/watcher.h"

PYBIND11_MODULE(_native, m) {
  m.doc() = "shmbroker's C++ client library, bound for Python.";
  shmbroker::python::BindTypes(m);
  shmbroker::python::PyBuffer::Bind(m);
  shmbroker::python::PyWatcher::Bind(m);
  shmbroker::python::BindClient(m);
}
