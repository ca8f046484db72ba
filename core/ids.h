// The ids the core hands out and the types of who owns what. Plain
// integers; 0 is never a valid id.
#ifndef SHMBROKER_CORE_IDS_H_
#define SHMBROKER_CORE_IDS_H_

#include <sys/types.h>

#include <cstdint>

namespace shmbroker {

// A buffer, unique for the daemon's lifetime.
using Handle = uint64_t;
// A lease, unique for the daemon's lifetime.
using LeaseId = uint64_t;
// A client connection (one connected fd channel).
using ConnectionId = uint64_t;
// A pooled arena, never reused.
using ArenaId = uint64_t;
// Who owns memory and is charged for it: a uid.
using TenantId = uid_t;

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_IDS_H_
