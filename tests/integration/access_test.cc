// Access across real uids: the daemon (root) serves a second uid (nobody,
// 65534) through a socket group; that uid is denied owner-only buffers and
// admitted by uid, gid and "all" share rules. Needs root (as CI has): run
// as a user, these tests fail rather than skip.
#include <sys/stat.h>
#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

class AccessTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--socket_group=" + std::to_string(kNobody)};
  }

  void SetUp() override {
    ASSERT_TRUE(RunningAsRoot());
    DaemonTest::SetUp();
    ShareCliWithOtherUids(*daemon_);
  }

  // The CLI run as uid/gid 65534 with no supplementary groups.
  Finished CliAsNobody(const std::vector<std::string>& args) {
    return RunCliAs(*daemon_, kNobody, args);
  }

  void Allocate(const std::string& name,
                std::vector<client::ShareRule> share = {}) {
    auto b = client_->Allocate({4096, name, client::Backing::kMemfd, share});
    ASSERT_TRUE(b.ok()) << b.status();
    std::memcpy(b->data(), name.data(), name.size());
    held_.push_back(std::move(*b));
  }

  std::vector<client::Buffer> held_;
};

TEST_F(AccessTest, OwnerOnlyBufferIsDeniedToAnotherUid) {
  Allocate("secret");
  Finished cat = CliAsNobody({"cat", "secret"});
  EXPECT_EQ(cat.exit_code, 1);
  EXPECT_THAT(cat.err, HasSubstr("permission denied"));
  EXPECT_EQ(cat.out, "");
  Finished ls = CliAsNobody({"ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_TRUE(nlohmann::json::parse(ls.out)["buffers"].empty());
}

TEST_F(AccessTest, UidShareAdmitsThatUid) {
  Allocate("for-nobody", {{client::ShareRule::Scope::kUid, kNobody, false}});
  Allocate("for-someone-else", {{client::ShareRule::Scope::kUid, 4242, false}});
  Finished cat = CliAsNobody({"cat", "for-nobody"});
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out.substr(0, 10), "for-nobody");
  EXPECT_EQ(CliAsNobody({"cat", "for-someone-else"}).exit_code, 1);
  Finished ls = CliAsNobody({"ls", "--json"});
  auto buffers = nlohmann::json::parse(ls.out)["buffers"];
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0]["name"], "for-nobody");
  EXPECT_EQ(buffers[0]["owner_uid"], 0);
}

TEST_F(AccessTest, GidShareAdmitsMembersOfThatPrimaryGroup) {
  Allocate("for-group", {{client::ShareRule::Scope::kGid, kNobody, false}});
  Allocate("for-other-group", {{client::ShareRule::Scope::kGid, 4242, false}});
  EXPECT_EQ(CliAsNobody({"cat", "for-group"}).exit_code, 0);
  Finished denied = CliAsNobody({"cat", "for-other-group"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("permission denied"));
}

TEST_F(AccessTest, ShareWithAllAdmitsEveryone) {
  Allocate("for-all", {{client::ShareRule::Scope::kAll, 0, true}});
  Finished cat = CliAsNobody({"cat", "for-all"});
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out.substr(0, 7), "for-all");
}

TEST_F(AccessTest, AnotherUidsBufferCanBeSharedBackToRoot) {
  // nobody allocates; root (the owner's uid or not) may always attach.
  Subprocess put(
      {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
       "--", daemon_->dir() + "/shmbroker", "--socket=" + daemon_->socket(),
       "put", "from-nobody", "--hold=60s"},
      "nobody's data", {"LD_LIBRARY_PATH=" + daemon_->dir()});
  ASSERT_TRUE(put.WaitForOutput("from-nobody", absl::Seconds(10)));
  auto attached = client_->Attach("from-nobody");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_EQ(attached->info().owner_uid, kNobody);
  EXPECT_EQ(
      std::string(reinterpret_cast<char*>(attached->data()), attached->size()),
      "nobody's data");
}

TEST(SocketPermissionTest, UidOutsideTheSocketGroupCannotConnect) {
  ASSERT_TRUE(RunningAsRoot());
  TestDaemon daemon;  // no --socket_group: directory 0750, socket 0660
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  struct stat st {};
  ASSERT_EQ(::stat((daemon.dir() + "/run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
  ASSERT_EQ(::stat(daemon.socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  namespace fs = std::filesystem;
  fs::copy_file(CliPath(), fs::path(daemon.dir()) / "shmbroker");
  fs::copy_file(SHMBROKER_LIB_PATH,
                fs::path(daemon.dir()) / "libshmbroker.so.0");
  Finished ls = RunToEnd({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                          "--clear-groups", "--", daemon.dir() + "/shmbroker",
                          "--socket=" + daemon.socket(), "status"},
                         "", {"LD_LIBRARY_PATH=" + daemon.dir()});
  EXPECT_EQ(ls.exit_code, 1);
  EXPECT_THAT(ls.err, HasSubstr("shmbroker: "));
  EXPECT_EQ(std::count(ls.err.begin(), ls.err.end(), '\n'), 1) << ls.err;
}

}  // namespace
}  // namespace shmbroker::testing
