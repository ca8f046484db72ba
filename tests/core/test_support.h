// Helpers shared by the core unit tests: status matchers, a fake clock, a
// RAII mapping and unique POSIX shm names. Header-only, test code only.
#ifndef SHMBROKER_TESTS_CORE_TEST_SUPPORT_H_
#define SHMBROKER_TESTS_CORE_TEST_SUPPORT_H_

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/limit.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker::testing {

inline const absl::Status& GetStatus(const absl::Status& status) {
  return status;
}
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// Matches an absl::Status or StatusOr that is OK.
MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

// Matches an OK absl::StatusOr whose value matches `value_matcher`.
MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

// Matches an absl::Status or StatusOr that says `limit` refused it
// (core/limit.h).
MATCHER_P(RefusedBy, limit, "is refused by a configured limit") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return LimitOf(status) == limit;
}

// Matches an absl::Status or StatusOr with `code` and a message matching
// `message_matcher`, so tests check both what failed and that it says why.
MATCHER_P2(
    StatusIs, code, message_matcher,
    absl::StrCat(negation ? "isn't" : "is", " a status with code ",
                 absl::StatusCodeToString(code), " and a message that ",
                 ::testing::DescribeMatcher<std::string>(message_matcher))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::ExplainMatchResult(
             message_matcher, std::string(status.message()), result_listener);
}

// One MAP_SHARED mapping, unmapped on destruction; records errno on failure.
class Mapping {
 public:
  Mapping(int fd, size_t length, int prot) : length_(length) {
    addr_ = ::mmap(nullptr, length, prot, MAP_SHARED, fd, 0);
    error_ = addr_ == MAP_FAILED ? errno : 0;
  }
  ~Mapping() {
    if (ok()) ::munmap(addr_, length_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  bool ok() const { return addr_ != MAP_FAILED; }
  int error() const { return error_; }
  char* data() const { return static_cast<char*>(addr_); }
  size_t length() const { return length_; }

 private:
  void* addr_;
  size_t length_;
  int error_;
};

inline uint64_t PageSize() {
  return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// A shm name unique to this process and test, so parallel ctest runs (one
// process per test) and a whole-binary run never collide.
inline std::string UniqueShmName(const std::string& tag) {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat("/shmbroker-test-", ::getpid(), "-",
                      info != nullptr ? info->name() : "none", "-", tag);
}

// Where Linux (glibc) puts a POSIX shm object named `shm_name`.
inline std::string ShmPath(const std::string& shm_name) {
  return absl::StrCat("/dev/shm", shm_name);
}

inline bool ShmExists(const std::string& shm_name) {
  struct stat st;
  return ::stat(ShmPath(shm_name).c_str(), &st) == 0;
}

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_CORE_TEST_SUPPORT_H_
