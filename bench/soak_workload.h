// The mixed workload of one shmbroker-soak client process: allocate (pooled,
// dedicated, POSIX), attach, seal and wait for the seal, release (one-way
// and by RPC), leases granted, revoked and left to expire (detached ones
// too), and waits that end at their deadline. It keeps a bounded set of
// buffers and leases, so a healthy daemon's usage stays flat.
#ifndef SHMBROKER_BENCH_SOAK_WORKLOAD_H_
#define SHMBROKER_BENCH_SOAK_WORKLOAD_H_

#include <cstdint>
#include <string>

namespace shmbroker::bench {

// Runs at most `rate` operations a second until killed (or until an
// operation fails in a way the workload does not expect: then it prints the
// error and returns 1).
int RunSoakWorker(const std::string& socket, uint64_t seed, int rate);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_SOAK_WORKLOAD_H_
