// POSIX shm names are host-wide and anyone may create one. Another user who
// creates every name the daemon could predict (/PREFIX.INSTANCE.HANDLE, the
// instance being in every name the daemon made, and that with a fixed
// suffix) must not stop POSIX allocations, nor have the daemon hand out
// their objects.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

constexpr int kSquatted = 300;

TEST(PosixNamesTest, SquattedPredictableNamesDoNotStopPosixAllocations) {
  ASSERT_TRUE(RunningAsRoot());
  const std::string prefix = absl::StrCat("squat", ::getpid());
  TestDaemon daemon({"--shm_prefix=" + prefix, "--pooling=false"});
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  // The instance id of the daemon's state directory (beside the socket).
  const std::string instance =
      ReadWholeFile(daemon.dir() + "/run/state/instance");
  ASSERT_EQ(instance.size(), 16u);
  const std::string stem = absl::StrCat(prefix, ".", instance, ".");

  // As nobody, create the names the daemon used to use for handles 1 to
  // kSquatted, and each of them with an all-zero suffix.
  std::string script = "set -e; cd /dev/shm; for h in $(seq 1 " +
                       std::to_string(kSquatted) + "); do : > " + stem +
                       "$h; : > " + stem + "$h.0000000000000000; done";
  Finished squat =
      RunToEnd({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                "--clear-groups", "--", "/bin/sh", "-c", script});
  ASSERT_EQ(squat.exit_code, 0) << squat.err;
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + stem + "1").c_str(), &st), 0);
  ASSERT_EQ(st.st_uid, kNobody);

  auto client = daemon.Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<client::Buffer> buffers;
  for (int i = 0; i < 20; ++i) {
    client::AllocateOptions options;
    options.size = 4096;
    options.backing = client::Backing::kPosix;
    auto buffer = (*client)->Allocate(options);
    ASSERT_TRUE(buffer.ok()) << "allocation " << i << ": " << buffer.status();
    const client::BufferInfo& info = buffer->info();
    EXPECT_THAT(info.shm_name,
                ::testing::MatchesRegex("/" + stem + absl::StrCat(info.handle) +
                                        "\\.[0-9a-f]{16}"));
    // The daemon's own object: owned by the allocating uid (root here).
    ASSERT_EQ(::stat(("/dev/shm" + info.shm_name).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u);
    // No handle is burnt on a retry: they follow one another.
    if (!buffers.empty()) {
      EXPECT_EQ(info.handle, buffers.back().info().handle + 1);
    }
    buffers.push_back(std::move(*buffer));
  }
  buffers.clear();
  client->reset();

  // The squatter's objects are left alone.
  for (int h = 1; h <= kSquatted; ++h) {
    const std::string path = absl::StrCat("/dev/shm/", stem, h);
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_uid, kNobody) << path;
    ::unlink(path.c_str());
    ::unlink((path + ".0000000000000000").c_str());
  }
}

}  // namespace
}  // namespace shmbroker::testing
