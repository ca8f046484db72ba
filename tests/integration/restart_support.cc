#include "tests/integration/restart_support.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {

std::string RestartMismatch(const uint8_t* data, size_t size, uint64_t handle) {
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != RestartPattern(handle, i)) {
      return absl::StrCat("byte ", i, " is ", data[i], ", not ",
                          RestartPattern(handle, i));
    }
  }
  return "";
}

std::vector<std::string> ShmNames(const std::string& prefix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/dev/shm", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename();
    if (absl::StartsWith(name, prefix)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace shmbroker::testing
