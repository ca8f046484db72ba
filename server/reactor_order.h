// The order gRPC gives a reactor's reactions, told to ThreadSanitizer.
//
// gRPC runs a reactor's reactions (OnReadDone, OnWriteDone, OnCancel,
// OnDone) on its own threads, each after the operation that asked for it
// (StartRead, StartWrite, Finish) was handed over, and OnDone after all the
// others. It keeps that order inside libgrpc, which a TSan build does not
// instrument, so TSan sees none of it: it would report a reactor's members
// as raced between its constructor and its reactions, or between a
// reaction that finished the call and the OnDone that deletes the reactor.
//
// The rule for a reactor: call HandingToGrpc(this) just before every
// Start... and Finish, and ReactionBegins(this) first thing in every
// reaction. Accesses from threads of our own (a Registry wake, the
// sweeper) are not covered: they must be ordered by our locks, and TSan
// still checks them. Outside TSan builds both are empty.
#ifndef SHMBROKER_SERVER_REACTOR_ORDER_H_
#define SHMBROKER_SERVER_REACTOR_ORDER_H_

#include "absl/base/config.h"

#ifdef ABSL_HAVE_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace shmbroker {

inline void HandingToGrpc(const void* reactor) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  __tsan_release(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

inline void ReactionBegins(const void* reactor) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  __tsan_acquire(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_REACTOR_ORDER_H_
