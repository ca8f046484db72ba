#include "tests/integration/restart_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
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

double Metric(const TestDaemon& daemon, const std::string& series) {
  std::smatch port;
  const std::string& out = daemon.startup_output();
  if (!std::regex_search(out, port, std::regex("127\\.0\\.0\\.1:(\\d+)"))) {
    return -1;
  }
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(port[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    return -1;
  }
  const std::string get = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (::write(fd.get(), get.data(), get.size()) !=
      static_cast<ssize_t>(get.size())) {
    return -1;
  }
  std::string body;
  char buf[65536];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) > 0;) {
    body.append(buf, static_cast<size_t>(n));
  }
  const size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + series.size() + 2));
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
