// File descriptors in tests: how many a process has open, from
// /proc/PID/fd (what tests compare with a baseline to find leaked fds, in
// the daemon or in themselves), and which memory one refers to.
// Header-only, libc and Abseil only (no gRPC, no gtest), so that every test
// tree can use it, the ThreadSanitizer one included.
#ifndef SHMBROKER_TESTS_COMMON_PROC_FDS_H_
#define SHMBROKER_TESTS_COMMON_PROC_FDS_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace shmbroker::testing {

// 0 when /proc/PID/fd cannot be read (the process is gone).
inline int CountFds(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/fd"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// The inode `fd` refers to (two fds of one memfd share it), 0 when fstat
// fails.
inline ino_t InodeOf(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_COMMON_PROC_FDS_H_
