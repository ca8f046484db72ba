#include "python/src/types.h"

#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "shmbroker/types.h"

namespace shmbroker::python {

namespace py = pybind11;
using namespace shmbroker::client;  // NOLINT: the mirrored types

namespace {

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }
double Seconds(absl::Time t) { return Seconds(t - absl::UnixEpoch()); }

// def_readonly for a field that is a Time or Duration, as float seconds.
template <typename C, typename T>
void Time(py::class_<C>& cls, const char* name, T C::*field) {
  cls.def_property_readonly(name,
                            [field](const C& c) { return Seconds(c.*field); });
}

}  // namespace

void BindTypes(py::module_& m) {
  py::class_<BufferInfo> buffer(m, "BufferInfo",
                                "What the daemon says about a buffer.");
  buffer.def_readonly("handle", &BufferInfo::handle)
      .def_readonly("name", &BufferInfo::name)
      .def_readonly("size", &BufferInfo::size)
      .def_property_readonly(
          "backing", [](const BufferInfo& b) { return BackingName(b.backing); })
      .def_readonly("owner_uid", &BufferInfo::owner_uid)
      .def_readonly("owner_gid", &BufferInfo::owner_gid)
      .def_readonly("owner_pid", &BufferInfo::owner_pid)
      .def_readonly("holders", &BufferInfo::holders)
      .def_property_readonly("share",
                             [](const BufferInfo& b) {
                               std::vector<std::string> rules;
                               for (const ShareRule& r : b.share) {
                                 rules.push_back(ShareRuleToString(r));
                               }
                               return rules;
                             })
      .def_readonly("shm_name", &BufferInfo::shm_name)
      .def_readonly("charged_bytes", &BufferInfo::charged_bytes)
      .def_property_readonly(
          "kind", [](const BufferInfo& b) { return KindName(b.kind); })
      .def_readonly("arena_id", &BufferInfo::arena_id)
      .def_readonly("offset", &BufferInfo::offset)
      .def_readonly("sealed", &BufferInfo::sealed)
      .def("__repr__", [](const BufferInfo& b) {
        return absl::StrCat("<BufferInfo handle=", b.handle, " name='", b.name,
                            "' size=", b.size, " kind=", KindName(b.kind),
                            " holders=", b.holders, ">");
      });
  Time(buffer, "created", &BufferInfo::created);

  py::class_<LeaseInfo> lease(m, "LeaseInfo", "A lease (docs/api.md).");
  lease.def_readonly("id", &LeaseInfo::id)
      .def_readonly("detached", &LeaseInfo::detached)
      .def_readonly("connection_default", &LeaseInfo::connection_default)
      .def_readonly("holds", &LeaseInfo::holds)
      .def_readonly("owner_pid", &LeaseInfo::owner_pid)
      .def_readonly("owner_uid", &LeaseInfo::owner_uid)
      .def_readonly("owner_gid", &LeaseInfo::owner_gid)
      .def_readonly("connected", &LeaseInfo::connected)
      .def("__int__", [](const LeaseInfo& l) { return l.id; })
      .def("__repr__", [](const LeaseInfo& l) {
        return absl::StrCat(
            "<LeaseInfo id=", l.id, " ttl=", absl::FormatDuration(l.ttl),
            l.detached ? " detached" : "", " holds=", l.holds, ">");
      });
  Time(lease, "ttl", &LeaseInfo::ttl);
  Time(lease, "granted_ttl", &LeaseInfo::granted_ttl);
  Time(lease, "granted", &LeaseInfo::granted);

  py::class_<TenantUsage>(m, "TenantUsage")
      .def_readonly("uid", &TenantUsage::uid)
      .def_readonly("allocated_bytes", &TenantUsage::allocated_bytes)
      .def_readonly("buffers", &TenantUsage::buffers);

  py::class_<PoolStatus> pool(m, "PoolStatus", "The pooled arenas.");
  pool.def_readonly("enabled", &PoolStatus::enabled)
      .def_readonly("arena_size", &PoolStatus::arena_size)
      .def_readonly("pooled_max_size", &PoolStatus::pooled_max_size)
      .def_readonly("arenas", &PoolStatus::arenas)
      .def_readonly("arena_bytes", &PoolStatus::arena_bytes)
      .def_readonly("live_buffers", &PoolStatus::live_buffers)
      .def_readonly("in_use_bytes", &PoolStatus::in_use_bytes)
      .def_readonly("free_bytes", &PoolStatus::free_bytes);

  py::class_<DaemonStatus> status(m, "DaemonStatus",
                                  "The daemon's Status answer.");
  status.def_readonly("capacity_bytes", &DaemonStatus::capacity_bytes)
      .def_readonly("allocated_bytes", &DaemonStatus::allocated_bytes)
      .def_readonly("committed_bytes", &DaemonStatus::committed_bytes)
      .def_readonly("buffers", &DaemonStatus::buffers)
      .def_readonly("clients", &DaemonStatus::clients)
      .def_readonly("holds", &DaemonStatus::holds)
      .def_readonly("version", &DaemonStatus::version)
      .def_readonly("tenants", &DaemonStatus::tenants)
      .def_readonly("leases", &DaemonStatus::leases)
      .def_readonly("detached_leases", &DaemonStatus::detached_leases)
      .def_readonly("waiters", &DaemonStatus::waiters)
      .def_readonly("watchers", &DaemonStatus::watchers)
      .def_readonly("revision", &DaemonStatus::revision)
      .def_readonly("arenas", &DaemonStatus::arenas)
      .def("__repr__", [](const DaemonStatus& s) {
        return absl::StrCat("<DaemonStatus buffers=", s.buffers,
                            " holds=", s.holds, " leases=", s.leases,
                            " allocated_bytes=", s.allocated_bytes, ">");
      });
  Time(status, "started", &DaemonStatus::started);
}

}  // namespace shmbroker::python
