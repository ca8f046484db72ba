// The daemon's file descriptor limit. Every live dedicated buffer and every
// arena is an open fd in the daemon, and so is every client connection (its
// fd channel and its gRPC socket), so RLIMIT_NOFILE bounds them all.
#ifndef SHMBROKER_SERVER_FD_LIMIT_H_
#define SHMBROKER_SERVER_FD_LIMIT_H_

#include <cstdint>

#include "server/config.h"

namespace shmbroker {

// The soft RLIMIT_NOFILE, or 0 when unknown.
uint64_t SoftFdLimit();

// Raises the soft RLIMIT_NOFILE to the hard limit, warns when that is too
// low for --max_buffers plus --fd_reserve, and returns the fd number from
// which new segments are refused (RegistryOptions::max_segment_fd): the
// limit less --fd_reserve, at least 1.
uint64_t SetUpFdLimit(const ServerConfig& config);

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_FD_LIMIT_H_
