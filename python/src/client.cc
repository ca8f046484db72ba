#include "python/src/client.h"

#include <pybind11/stl.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "python/src/buffer.h"
#include "python/src/status.h"
#include "python/src/watcher.h"
#include "shmbroker/client.h"

namespace shmbroker::python {

namespace py = pybind11;
using client::Access;

namespace {

// A lease argument: None (the connection's default), an int, or a
// LeaseInfo.
uint64_t LeaseId(const py::object& lease) {
  if (lease.is_none()) return 0;
  if (py::isinstance<client::LeaseInfo>(lease)) {
    return lease.cast<const client::LeaseInfo&>().id;
  }
  if (!py::isinstance<py::int_>(lease)) {
    Raise(PyExc_TypeError, "lease must be None, an int or a LeaseInfo");
  }
  int64_t id = lease.cast<int64_t>();
  if (id < 0) Raise(PyExc_ValueError, "lease id must not be negative");
  return static_cast<uint64_t>(id);
}

absl::Duration SecondsArg(double seconds, const char* what) {
  if (!(seconds >= 0)) {  // also NaN
    Raise(PyExc_ValueError,
          std::string(what) + " must be a non-negative number of seconds");
  }
  return absl::Seconds(seconds);
}

class PyClient {
 public:
  PyClient(std::optional<std::string> socket, double timeout,
           bool resume_after_restart)
      : pid_(::getpid()) {
    client::ClientOptions options;
    options.socket_path = socket.value_or("");
    options.timeout = SecondsArg(timeout, "timeout");
    options.resume_after_restart = resume_after_restart;
    absl::StatusOr<std::unique_ptr<client::Client>> connected;
    {
      py::gil_scoped_release unlocked;
      connected = client::Client::Connect(options);
    }
    client_ = Unwrap(std::move(connected));
  }
  ~PyClient() {
    if (pid_ != ::getpid()) LeakInChild(std::move(client_));
  }

  void Close() {
    if (pid_ != ::getpid()) LeakInChild(std::move(client_));
    std::shared_ptr<client::Client> closing = std::move(client_);
    py::gil_scoped_release unlocked;
    closing.reset();
  }
  bool closed() const { return client_ == nullptr; }

  // The client for one call, kept alive through it even if another thread
  // closes this object meanwhile.
  std::shared_ptr<client::Client> Get() const {
    if (!client_) {
      RaiseStatus(absl::FailedPreconditionError("the client is closed"));
    }
    return client_;
  }

  // Runs `call(client)` without the GIL, then raises its error or returns
  // its value.
  template <typename F>
  auto Run(F call) const {
    std::shared_ptr<client::Client> c = Get();
    std::optional<decltype(call(*c))> result;
    {
      py::gil_scoped_release unlocked;
      result.emplace(call(*c));
    }
    if constexpr (std::is_same_v<decltype(call(*c)), absl::Status>) {
      ThrowIfError(*result);
    } else {
      return Unwrap(std::move(*result));
    }
  }

  std::unique_ptr<PyBuffer> Wrap(client::Buffer buffer) const {
    return std::make_unique<PyBuffer>(Get(), std::move(buffer));
  }

  std::unique_ptr<PyBuffer> Allocate(
      int64_t size, std::optional<std::string> name, const std::string& kind,
      const std::vector<std::string>& share, const py::object& lease,
      const std::string& backing, bool uninitialized,
      std::optional<double> wait_for_room) {
    if (size <= 0) {
      RaiseStatus(absl::InvalidArgumentError("size must be positive"));
    }
    client::AllocateOptions options;
    options.size = static_cast<uint64_t>(size);
    options.name = name.value_or("");
    options.kind = Unwrap(client::ParseKind(kind));
    if (backing != "default")
      options.backing = Unwrap(client::ParseBacking(backing));
    for (const std::string& rule : share) {
      options.share.push_back(Unwrap(client::ParseShareRule(rule)));
    }
    options.lease_id = LeaseId(lease);
    options.uninitialized = uninitialized;
    if (wait_for_room) {
      options.wait_for_room = SecondsArg(*wait_for_room, "wait_for_room");
    }
    return Wrap(Run([&](client::Client& c) { return c.Allocate(options); }));
  }

  std::unique_ptr<PyBuffer> Attach(const py::object& target,
                                   std::optional<double> wait, bool sealed,
                                   bool writable, const py::object& lease) {
    const Access access = writable ? Access::kReadWrite : Access::kReadOnly;
    const uint64_t lease_id = LeaseId(lease);
    if (py::isinstance<py::int_>(target)) {
      if (wait || sealed) {
        Raise(PyExc_ValueError, "wait and sealed need a buffer name");
      }
      int64_t handle = target.cast<int64_t>();
      if (handle <= 0) {
        RaiseStatus(absl::InvalidArgumentError("handle must be positive"));
      }
      return Wrap(Run([&](client::Client& c) {
        return c.AttachHandle(static_cast<uint64_t>(handle), access, lease_id);
      }));
    }
    if (!py::isinstance<py::str>(target)) {
      Raise(PyExc_TypeError,
            "attach() takes a buffer name (str) or handle (int)");
    }
    const std::string name = target.cast<std::string>();
    if (!wait && !sealed) {
      return Wrap(Run(
          [&](client::Client& c) { return c.Attach(name, access, lease_id); }));
    }
    client::WaitOptions options;
    options.until = sealed ? client::WaitOptions::Until::kSealed
                           : client::WaitOptions::Until::kCreated;
    if (wait) options.timeout = SecondsArg(*wait, "wait");
    options.access = access;
    options.lease_id = lease_id;
    return Wrap(
        Run([&](client::Client& c) { return c.AttachWhen(name, options); }));
  }

  // The receiver's half of pickling by reference: attach `handle` under
  // this connection's default lease, then drop the sender's transfer hold
  // (one-way: no round trip). Another uid's transfer lease is not this
  // process's to touch: its hold ends with the lease's TTL.
  std::unique_ptr<PyBuffer> AttachTransfer(uint64_t handle, uint64_t lease_id,
                                           bool writable, int64_t sender_uid) {
    const Access access = writable ? Access::kDefault : Access::kReadOnly;
    return Wrap(Run([&](client::Client& c) {
      absl::StatusOr<client::Buffer> buffer = c.AttachHandle(handle, access);
      if (buffer.ok() && sender_uid == static_cast<int64_t>(::geteuid())) {
        c.ReleaseOneWay(handle, lease_id);
      }
      return buffer;
    }));
  }

  uint32_t Release(const py::object& target) {
    if (py::isinstance<py::int_>(target)) {
      int64_t handle = target.cast<int64_t>();
      if (handle <= 0) {
        RaiseStatus(absl::InvalidArgumentError("handle must be positive"));
      }
      return Run([&](client::Client& c) {
        return c.Release(static_cast<uint64_t>(handle));
      });
    }
    if (!py::isinstance<py::str>(target)) {
      Raise(PyExc_TypeError,
            "release() takes a buffer name (str) or handle (int)");
    }
    const std::string name = target.cast<std::string>();
    return Run([&](client::Client& c) { return c.ReleaseByName(name); });
  }

  std::shared_ptr<client::Client> client_;
  pid_t pid_;
};

}  // namespace

void BindClient(py::module_& m) {
  py::class_<PyClient>(m, "Client", R"doc(
A connection to shmbrokerd.

Client(socket=None, timeout=10.0, resume_after_restart=True): socket None
means $SHMBROKER_SOCKET or the daemon's default path; timeout is each
call's deadline in seconds. When the daemon restarts, the client reconnects
and takes its leases and Buffers back (resume_after_restart=False: the
connection ends with the daemon).
Errors raise shmbroker.Error subclasses (NotFound, PermissionDenied, ...)
with the daemon's message. Every blocking call releases the GIL. A context
manager: leaving the block closes it (its Buffers stay valid).)doc")
      .def(py::init<std::optional<std::string>, double, bool>(),
           py::arg("socket") = py::none(), py::arg("timeout") = 10.0,
           py::arg("resume_after_restart") = true)
      .def("allocate", &PyClient::Allocate, py::arg("size"),
           py::arg("name") = py::none(), py::arg("kind") = "auto",
           py::arg("share") = std::vector<std::string>(),
           py::arg("lease") = py::none(), py::arg("backing") = "default",
           py::arg("uninitialized") = false,
           py::arg("wait_for_room") = py::none(), R"doc(
Allocates a buffer of `size` bytes and maps it writable.

kind: 'auto' (pooled when small, owner-only and memfd), 'dedicated' or
'pooled'. share: rules like 'uid:1000:rw', 'gid:5', 'all'. lease: a lease
(id or LeaseInfo) to hold it under; None: the connection's. backing:
'default', 'memfd' or 'posix'. wait_for_room: seconds to wait for room
when the daemon has none (its capacity, its buffer limit, this uid's
quota) instead of raising ResourceExhausted; None: do not wait.)doc")
      .def("attach", &PyClient::Attach, py::arg("name"),
           py::arg("wait") = py::none(), py::arg("sealed") = false,
           py::arg("writable") = false, py::arg("lease") = py::none(), R"doc(
Maps an existing buffer, by name (str) or handle (int).

wait: seconds to wait for a buffer of that name to be created (None: it
must exist now). sealed: wait until it is sealed too (up to `wait`
seconds, 10 when None). writable: map it read-write (else read-only).
lease: the lease to hold it under (None: the connection's).)doc")
      .def("release", &PyClient::Release, py::arg("name"), R"doc(
Drops one hold of this connection (or of a detached lease of this uid) on a
buffer, by name or handle; returns the holders left.)doc")
      .def(
          "seal",
          [](PyClient& c, const std::string& name) {
            return c.Run([&](client::Client& cl) { return cl.Seal(name); });
          },
          py::arg("name"), "Seals a buffer this connection holds, by name.")
      .def(
          "status",
          [](PyClient& c) {
            return c.Run([](client::Client& cl) { return cl.Status(); });
          },
          "The daemon's status.")
      .def(
          "describe",
          [](PyClient& c, const std::string& name) {
            return c.Run([&](client::Client& cl) { return cl.Describe(name); });
          },
          py::arg("name"), "What the daemon says about buffer `name`.")
      .def(
          "ls",
          [](PyClient& c) {
            return c.Run([](client::Client& cl) { return cl.List(); });
          },
          "Every buffer this process may see.")
      .def(
          "ping",
          [](PyClient& c) {
            c.Run([](client::Client& cl) { return cl.Ping(); });
          },
          "Raises Unavailable when no daemon answers.")
      .def(
          "grant_lease",
          [](PyClient& c, double ttl, bool detached) {
            absl::Duration d = SecondsArg(ttl, "ttl");
            return c.Run(
                [&](client::Client& cl) { return cl.GrantLease(d, detached); });
          },
          py::arg("ttl"), py::arg("detached") = false, R"doc(
Grants a lease of `ttl` seconds (0: the daemon's default; clamped to its
bounds), renewed by the library's background thread while this client or
its buffers live. A detached lease outlives this process by its TTL.)doc")
      .def(
          "revoke",
          [](PyClient& c, const py::object& lease) {
            uint64_t id = LeaseId(lease);
            return c.Run(
                [&](client::Client& cl) { return cl.RevokeLease(id); });
          },
          py::arg("lease"), "Ends a lease now; returns the bytes reclaimed.")
      .def(
          "leases",
          [](PyClient& c) {
            return c.Run([](client::Client& cl) { return cl.ListLeases(); });
          },
          "The leases of this uid (all of them for root).")
      .def(
          "lease",
          [](PyClient& c, const py::object& lease) {
            uint64_t id = LeaseId(lease);
            return c.Run(
                [&](client::Client& cl) { return cl.LeaseTimeToLive(id); });
          },
          py::arg("lease") = py::none(),
          "A lease with its remaining TTL (None: the default lease).")
      .def(
          "watch",
          [](PyClient& c, const std::string& prefix, int64_t after_revision) {
            if (after_revision < 0) {
              Raise(PyExc_ValueError, "after_revision must not be negative");
            }
            client::WatchOptions options;
            options.after_revision = static_cast<uint64_t>(after_revision);
            return std::make_unique<PyWatcher>(c.Run(
                [&](client::Client& cl) { return cl.Watch(prefix, options); }));
          },
          py::arg("prefix") = "", py::arg("after_revision") = 0, R"doc(
A Watcher of the changes to the buffers whose name starts with `prefix`
(empty: all) that this process may see: those after `after_revision` (0:
from now on; e.g. the revision list_with_revision() returned, so that the
listing and the watch together miss nothing). Returns once the daemon has
registered the watcher.)doc")
      .def(
          "list_with_revision",
          [](PyClient& c) {
            client::ListResult listed =
                c.Run([](client::Client& cl) { return cl.ListWithRevision(); });
            return py::make_tuple(listed.buffers, listed.revision);
          },
          "(every buffer this process may see, the revision it reflects).")
      .def("_attach_transfer", &PyClient::AttachTransfer, py::arg("handle"),
           py::arg("lease"), py::arg("writable"), py::arg("sender_uid"))
      .def_property_readonly(
          "socket", [](const PyClient& c) { return c.Get()->socket_path(); },
          "The daemon's socket path.")
      .def_property_readonly(
          "default_lease",
          [](const PyClient& c) { return c.Get()->default_lease(); },
          "This connection's default lease id.")
      .def_property_readonly("closed", &PyClient::closed)
      .def("close", &PyClient::Close,
           "Closes the connection once its Buffers are gone too.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyClient& c, py::args) {
        c.Close();
        return false;
      });
}

}  // namespace shmbroker::python
