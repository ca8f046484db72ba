#include "client/src/test_hooks.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"

namespace shmbroker::client::test_hooks_internal {
namespace {

// What SHMBROKER_TEST_PAUSE_AT asks for: a point, and which of its hits.
struct Request {
  std::string point;
  int hit = 1;
};

// Copied once: a later setenv may free what getenv returned.
const Request* Requested() {
  static const Request* const request = []() -> const Request* {
    const char* value = std::getenv("SHMBROKER_TEST_PAUSE_AT");
    if (value == nullptr) return nullptr;
    auto* r = new Request{value};
    const size_t colon = r->point.rfind(':');
    int hit = 0;
    if (colon != std::string::npos &&
        absl::SimpleAtoi(absl::string_view(r->point).substr(colon + 1), &hit) &&
        hit >= 1) {
      r->hit = hit;
      r->point.resize(colon);
    }
    return r;
  }();
  return request;
}

}  // namespace

bool PauseRequested() { return Requested() != nullptr; }

void PauseIfRequested(const char* name) {
  const Request* request = Requested();
  if (request == nullptr || request->point != name) return;
  static std::atomic<int> hits{0};
  if (hits.fetch_add(1) + 1 != request->hit) return;
  // write(2), not stdio: the test reads this before the process stops, and
  // a buffered line would still be in the buffer.
  const std::string line = "shmbroker: paused at " + request->point + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  ::raise(SIGSTOP);
}

}  // namespace shmbroker::client::test_hooks_internal
