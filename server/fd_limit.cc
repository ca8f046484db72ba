#include "server/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>

#include "server/logging.h"

namespace shmbroker {
namespace {

// Fds the daemon uses whatever its clients do: gRPC's and the metrics
// endpoint's threads, epoll, eventfds, sockets, logs.
constexpr uint64_t kOwnFds = 64;

}  // namespace

uint64_t SoftFdLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  return limit.rlim_cur;
}

uint64_t SetUpFdLimit(const ServerConfig& config) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  const uint64_t soft = limit.rlim_cur;
  if (soft == RLIM_INFINITY) return 0;
  const uint64_t wanted =
      config.registry.max_buffers + config.fd_reserve + kOwnFds;
  if (soft < wanted) {
    spdlog::warn(
        "RLIMIT_NOFILE is {} (hard limit {}): under --max_buffers ({}) + "
        "--fd_reserve ({}) + {} for the daemon itself, so dedicated buffers "
        "will be refused (RESOURCE_EXHAUSTED, --fd_reserve) before "
        "--max_buffers; raise the limit (ulimit -n, systemd LimitNOFILE=) or "
        "lower --max_buffers",
        soft, limit.rlim_max, config.registry.max_buffers, config.fd_reserve,
        kOwnFds);
  }
  return soft > config.fd_reserve ? soft - config.fd_reserve : 1;
}

}  // namespace shmbroker
