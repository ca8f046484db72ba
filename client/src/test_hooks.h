// Test-only: named points where a client process can be frozen, so that a
// fault-injection test can SIGKILL it at exactly that moment (e.g. after a
// reply arrived but before its fd was claimed).
//
// When the environment variable SHMBROKER_TEST_PAUSE_AT equals `name`,
// PausePoint writes "shmbroker: paused at NAME\n" to stderr and raises
// SIGSTOP; after a SIGCONT it returns and the library carries on. The
// variable is read once, at the first PausePoint of the process; when it is
// unset, each call costs one check of a cached bool. Not for production use:
// nothing but tests should set the variable. Thread-safe.
//
// The points: "allocate_reply", "attach_reply" (the reply is in, its fd not
// yet claimed), "release_sent" (a one-way Release frame went out),
// "keepalive_sent" (the LeaseKeeper wrote a renewal).
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
