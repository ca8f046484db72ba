// ServerConfig: everything shmbrokerd takes from its command line, checked.
// Every limit is a named flag with a default (see `shmbrokerd --help`).
#ifndef SHMBROKER_SERVER_CONFIG_H_
#define SHMBROKER_SERVER_CONFIG_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/limit.h"
#include "core/registry.h"
#include "server/tenant_limits.h"

namespace shmbroker {

struct ServerConfig {
  std::string socket_path;
  std::optional<gid_t> socket_group;
  RegistryOptions registry;
  bool pooling = true;
  std::string pooling_off_reason;  // when !pooling, for the log
  // arena_size at most a sixteenth of the capacity.
  PooledAllocatorOptions pool;
  // Fds kept free; main turns it into registry.max_segment_fd once it knows
  // RLIMIT_NOFILE.
  uint32_t fd_reserve = 128;
  // Open gRPC connections per uid (server/grpc_acceptor.h).
  uint32_t max_grpc_connections_per_uid = 256;
  // gRPC connections: closed when idle this long (0: never); pinged after
  // keepalive_time without activity, closed without an answer in
  // keepalive_timeout.
  absl::Duration idle_connection_timeout = absl::Minutes(5);
  absl::Duration grpc_keepalive_time = absl::Minutes(1);
  absl::Duration grpc_keepalive_timeout = absl::Seconds(20);
  uint32_t list_max_page_size = 1000;
  uint64_t max_request_bytes = 64 * 1024;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics_address = "127.0.0.1:9464";
  uint32_t metrics_max_tenants = 20;
  uint32_t lease_sweep_batch = 256;
  uint32_t keepalive_max_per_second = 1000;
  // gRPC calls per gRPC connection a second (PeerTable).
  uint32_t max_calls_per_second = 20000;
  // Frames read from one client connection a second (FdChannel).
  uint32_t max_frames_per_second = 20000;
  // --shm_prefix as given (registry.shm_prefix adds "/" and the instance).
  std::string shm_prefix = "shmbroker";
  // Where the books live (server/restart.h); empty: none are kept.
  std::string state_dir;
  absl::Duration restart_grace = absl::Seconds(15);
  // --tenant_limits (empty: none) and what it held at start; its quotas are
  // in registry.own_quotas too.
  std::string tenant_limits_path;
  TenantLimits tenant_limits;
};

// Reads the flags parsed by absl::ParseCommandLine; INVALID_ARGUMENT names
// the bad flag.
absl::StatusOr<ServerConfig> ConfigFromFlags();

// What a uid --tenant_limits names has where the file leaves a limit out:
// the per-uid flags.
TenantDefaults TenantDefaultsOf(const ServerConfig& config);

// The flag that sets a limit the core enforces, e.g. "--max_buffers".
const char* FlagFor(Limit limit);

// A quarter of physical memory: the --capacity default.
uint64_t DefaultCapacity();

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_CONFIG_H_
