// shmbroker.Client: a connection to shmbrokerd (shmbroker::Client), bound
// for Python. Every call that may block releases the GIL; the library's
// LeaseKeeper thread renews leases without it. close() ends this object's
// use of the connection; Buffers keep the connection (and their leases)
// alive until they go. Thread-safe like the C++ Client.
#ifndef SHMBROKER_PYTHON_SRC_CLIENT_H_
#define SHMBROKER_PYTHON_SRC_CLIENT_H_

#include <pybind11/pybind11.h>

namespace shmbroker::python {

void BindClient(pybind11::module_& m);

}  // namespace shmbroker::python

#endif  // SHMBROKER_PYTHON_SRC_CLIENT_H_
