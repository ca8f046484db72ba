// What the daemon tells its service manager (systemd, through sd_notify(3))
// when $NOTIFY_SOCKET is set, as under deploy/systemd's Type=notify unit:
// that it is ready, that it is stopping, and, stopping for a restart, the
// memfd memory to keep in the service manager's fd store, which the next
// daemon gets back at start (LISTEN_FDS) and adopts. Without $NOTIFY_SOCKET
// (not under systemd) each is a no-op. Stored fds are named
// shmbroker-buffer-<handle> (a dedicated buffer's segment) and
// shmbroker-arena-<id> (a pooled arena); docs/operations.md, "Restarting
// and upgrading".
#ifndef SHMBROKER_SERVER_SERVICE_MANAGER_H_
#define SHMBROKER_SERVER_SERVICE_MANAGER_H_

#include <cstddef>

#include "core/registry.h"
#include "server/metrics.h"

namespace shmbroker {

// READY=1: the daemon serves.
void NotifyReady();
// STOPPING=1: the daemon has begun to stop.
void NotifyStopping();

// Stores the memory of every live memfd buffer and arena in the fd store
// (Registry::MemoryToKeep), one fd per message. Returns how many the
// service manager took (0 without $NOTIFY_SOCKET); logs failures.
size_t KeepMemoryInFdStore(const Registry& registry);

// Takes what the service manager passed from its fd store (LISTEN_FDS,
// LISTEN_FDNAMES; the variables are then unset): each fd of ours is adopted
// by the restored buffers it belongs to (Registry::AdoptKept), counted as
// readopted; the rest is closed with a log line. Every name of ours is then
// removed from the store: the memory is this daemon's again, and it stores
// it anew when it stops for a restart. With no `registry` (no books), every
// fd is closed. Call after Registry::Restore, before any client connects.
void TakeBackMemoryFromFdStore(Registry* registry, Metrics* metrics);

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_SERVICE_MANAGER_H_
