// TrimAfterReclaim: gives the daemon's freed heap back to the OS after a
// large reclaim. glibc keeps what is freed in its malloc arenas (one per
// thread that allocated), so a client that held 100,000 buffers left tens
// of MiB of the daemon's record memory resident after it died
// (docs/performance.md, "Memory per buffer"); malloc_trim(0) returns the
// free pages of every arena. It walks the whole heap, so it runs only after
// a reclaim of at least kTrimAfterRecords records (holds and buffers), on
// the thread that reclaimed, never under the Registry's lock. Thread-safe.
#ifndef SHMBROKER_SERVER_MEMORY_TRIM_H_
#define SHMBROKER_SERVER_MEMORY_TRIM_H_

#include <malloc.h>

#include <cstdint>

namespace shmbroker {

inline constexpr uint64_t kTrimAfterRecords = 4096;

// Trims the heap if `records` reach kTrimAfterRecords; returns whether it
// did.
inline bool TrimAfterReclaim(uint64_t records) {
  if (records < kTrimAfterRecords) return false;
  ::malloc_trim(0);
  return true;
}

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_MEMORY_TRIM_H_
