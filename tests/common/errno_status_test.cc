#include "common/errno_status.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

TEST(ErrnoStatusTest, MapsErrnoToTheCodeACallerActsOn) {
  using Code = absl::StatusCode;
  EXPECT_EQ(ErrnoToStatus(ENOMEM, "x").code(), Code::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(ENOSPC, "x").code(), Code::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(EMFILE, "x").code(), Code::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(ENFILE, "x").code(), Code::kResourceExhausted);
  EXPECT_EQ(ErrnoToStatus(EEXIST, "x").code(), Code::kAlreadyExists);
  EXPECT_EQ(ErrnoToStatus(EACCES, "x").code(), Code::kPermissionDenied);
  EXPECT_EQ(ErrnoToStatus(EPERM, "x").code(), Code::kPermissionDenied);
  EXPECT_EQ(ErrnoToStatus(EIO, "x").code(), Code::kInternal);
}

TEST(ErrnoStatusTest, NamesWhatFailedAndWhy) {
  EXPECT_EQ(ErrnoToStatus(EMFILE, "memfd_create").message(),
            "memfd_create: Too many open files");
}

}  // namespace
}  // namespace shmbroker
