#include "client/src/test_hooks.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace shmbroker::client::test_hooks_internal {
namespace {

// Copied once: a later setenv may free what getenv returned.
const std::string* RequestedPoint() {
  static const std::string* const point = [] {
    const char* value = std::getenv("SHMBROKER_TEST_PAUSE_AT");
    return value == nullptr ? nullptr : new std::string(value);
  }();
  return point;
}

}  // namespace

bool PauseRequested() { return RequestedPoint() != nullptr; }

void PauseIfRequested(const char* name) {
  const std::string* point = RequestedPoint();
  if (point == nullptr || *point != name) return;
  // write(2), not stdio: the test reads this before the process stops, and
  // a buffered line would still be in the buffer.
  const std::string line = "shmbroker: paused at " + *point + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  ::raise(SIGSTOP);
}

}  // namespace shmbroker::client::test_hooks_internal
