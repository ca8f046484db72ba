// Test-only: named points where a client process can be frozen, so that a
// fault-injection test can SIGKILL it at exactly that moment (e.g. after a
// reply arrived but before its fd was claimed).
//
// When the environment variable SHMBROKER_TEST_PAUSE_AT equals `name` (or
// `name:N`: the Nth time the process passes that point, N >= 1), PausePoint
// writes "shmbroker: paused at NAME\n" to stderr and raises SIGSTOP; after a
// SIGCONT it returns and the library carries on. The variable is read once,
// at the first PausePoint of the process; when it is unset, each call costs
// one check of a cached bool. Not for production use: nothing but tests
// should set the variable. Thread-safe.
//
// The points (tests/integration/fault_matrix_test.cc kills a client at
// each; reconnect_faults_test.cc at the resume_ ones):
//   "allocate_reply"  an Allocate reply is in, its fd not yet claimed
//   "attach_reply"    the same for Attach, and for an Attach that waited
//                     (Client::AttachWhen) once its wait ended
//   "release_sent"    a one-way Release frame went out
//   "keepalive_sent"  the LeaseKeeper wrote a renewal, not yet answered
//   "seal_reply"      a Seal is done, not yet returned to the caller: its
//                     reply is in (dedicated: the daemon sealed and woke the
//                     waiters), or its one-way frame went out (pooled)
//   "watch_event"     a Watch event is in, not yet handed to the caller
//   "resume_presented" reconnecting to a restarted daemon: every held fd
//                     presented on the new fd channel, Resume not yet called
//   "resume_reply"    the same, once the new daemon answered Resume (it has
//                     taken the leases back), before the library switched
//                     to the new connection
// A client blocked in a wait needs no point: a test waits for the daemon's
// count of waiters instead.
#ifndef SHMBROKER_CLIENT_SRC_TEST_HOOKS_H_
#define SHMBROKER_CLIENT_SRC_TEST_HOOKS_H_

namespace shmbroker::client {

namespace test_hooks_internal {
// Whether SHMBROKER_TEST_PAUSE_AT is set; reads the environment.
bool PauseRequested();
// Stops the process if `name` is the requested point.
void PauseIfRequested(const char* name);
}  // namespace test_hooks_internal

inline void PausePoint(const char* name) {
  static const bool requested = test_hooks_internal::PauseRequested();
  if (requested) [[unlikely]] {
    test_hooks_internal::PauseIfRequested(name);
  }
}

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_TEST_HOOKS_H_
