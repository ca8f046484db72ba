// The binding's one exception edge: absl::Status from the client library
// becomes the shmbroker.Error subclass of its code (shmbroker/errors.py
// holds the table), carrying the daemon's message and the code. Call with
// the GIL held.
#ifndef SHMBROKER_PYTHON_SRC_STATUS_H_
#define SHMBROKER_PYTHON_SRC_STATUS_H_

#include <pybind11/pybind11.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shmbroker::python {

// Raises the Python exception for a non-OK `status` (throws
// pybind11::error_already_set).
[[noreturn]] void RaiseStatus(const absl::Status& status);

inline void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) RaiseStatus(status);
}

template <typename T>
T Unwrap(absl::StatusOr<T> value) {
  if (!value.ok()) RaiseStatus(value.status());
  return std::move(*value);
}

// Raises Python's `type` (e.g. PyExc_ValueError) with `message`.
[[noreturn]] void Raise(PyObject* type, const std::string& message);

}  // namespace shmbroker::python

#endif  // SHMBROKER_PYTHON_SRC_STATUS_H_
