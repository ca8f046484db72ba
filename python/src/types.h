// The client library's value types (BufferInfo, LeaseInfo, DaemonStatus,
// ...) as read-only Python classes. Times are float seconds: absl::Time
// since the Unix epoch, absl::Duration as a length.
#ifndef SHMBROKER_PYTHON_SRC_TYPES_H_
#define SHMBROKER_PYTHON_SRC_TYPES_H_

#include <pybind11/pybind11.h>

namespace shmbroker::python {

void BindTypes(pybind11::module_& m);

}  // namespace shmbroker::python

#endif  // SHMBROKER_PYTHON_SRC_TYPES_H_
