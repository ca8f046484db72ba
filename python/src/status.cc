#include "python/src/status.h"

#include <string>

namespace shmbroker::python {

namespace py = pybind11;

void RaiseStatus(const absl::Status& status) {
  // errors.from_status picks the class; the table lives in Python so that
  // the classes carry docstrings and Python base classes (ValueError, ...).
  py::object error = py::module_::import("shmbroker.errors")
                         .attr("from_status")(static_cast<int>(status.code()),
                                              std::string(status.message()));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())),
                  error.ptr());
  throw py::error_already_set();
}

void Raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw py::error_already_set();
}

}  // namespace shmbroker::python
