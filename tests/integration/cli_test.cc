// The shmbroker CLI as users and outside checks run it: its output (tables
// and the JSON contract), its size and duration syntax, and its one-line
// errors with their exit codes.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class CliTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--capacity=2GiB"};
  }

  // One line on stderr, naming the cause; exit status 1.
  void ExpectError(const Finished& f, const std::string& cause) {
    EXPECT_EQ(f.exit_code, 1) << f.out << f.err;
    EXPECT_THAT(f.err, StartsWith("shmbroker: "));
    EXPECT_THAT(f.err, HasSubstr(cause));
    EXPECT_EQ(std::count(f.err.begin(), f.err.end(), '\n'), 1) << f.err;
  }
};

TEST_F(CliTest, AllocPrintsTheBufferAndHoldsIt) {
  Subprocess alloc(daemon_->CliArgs({"alloc", "4KiB", "--name=held"}));
  auto out = alloc.WaitForOutput("held", absl::Seconds(10));
  ASSERT_TRUE(out);
  EXPECT_THAT(*out, HasSubstr("NAME"));
  EXPECT_THAT(*out, HasSubstr("HANDLE"));
  EXPECT_THAT(*out, HasSubstr("4KiB"));
  EXPECT_THAT(*out, HasSubstr("memfd"));
  EXPECT_EQ(client_->Describe("held")->holders, 1u);
  alloc.Signal(SIGTERM);  // releases and exits cleanly
  Finished f = alloc.Wait();
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(client_->Describe("held").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CliTest, AllocJsonHasNameHandleSizeBacking) {
  Finished f = daemon_->Cli({"alloc", "1MiB", "--name=j", "--backing=posix",
                             "--hold=10ms", "--json"});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  auto j = nlohmann::json::parse(f.out);
  EXPECT_EQ(j["name"], "j");
  EXPECT_EQ(j["size"], 1 << 20);
  EXPECT_EQ(j["backing"], "posix");
  EXPECT_EQ(j["handle"], 1) << "the daemon's first buffer";
}

TEST_F(CliTest, SizesAcceptPlainAndBinaryUnits) {
  for (const auto& [text, bytes] :
       std::vector<std::pair<std::string, uint64_t>>{{"4096", 4096},
                                                     {"4KiB", 4096},
                                                     {"1MiB", 1 << 20},
                                                     {"1GiB", 1 << 30}}) {
    Finished f = daemon_->Cli({"alloc", text, "--hold=1ms", "--json"});
    ASSERT_EQ(f.exit_code, 0) << text << ": " << f.err;
    EXPECT_EQ(nlohmann::json::parse(f.out)["size"], bytes) << text;
  }
  Finished bad = daemon_->Cli({"alloc", "12XB"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("bad size"));
}

TEST_F(CliTest, HoldTakesDurationsAndEnds) {
  Finished f = daemon_->Cli({"alloc", "4096", "--name=brief", "--hold=500ms"});
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_EQ(client_->Describe("brief").status().code(),
            absl::StatusCode::kNotFound);
}

// docs/cli.md: a usage error exits 2. A flag value or a flag that the flag
// parser itself refuses is one too, like those the commands refuse.
TEST_F(CliTest, FlagsTheParserRefusesAreUsageErrorsExitingTwo) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"alloc", "4096", "--hold=forever"}, "hold"},
      {{"alloc", "4096", "--ttl=xyz"}, "ttl"},
      {{"--no_such_flag", "status"}, "no_such_flag"}};
  for (const auto& [args, flag] : cases) {
    Finished bad = daemon_->Cli(args);
    EXPECT_EQ(bad.exit_code, 2) << "--" << flag << ": " << bad.err;
    EXPECT_THAT(bad.err, HasSubstr(flag));
  }
}

TEST_F(CliTest, PutFromStdinAndCatRoundTripBinaryData) {
  std::string data = "binary\0data\xff with a NUL";
  data.push_back('\0');
  Subprocess put(daemon_->CliArgs({"put", "blob", "--hold=60s"}), data);
  ASSERT_TRUE(put.WaitForOutput("blob", absl::Seconds(10)));
  Finished cat = daemon_->Cli({"cat", "blob"});
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, data);
}

TEST_F(CliTest, PutFromFile) {
  const std::string path = daemon_->dir() + "/input.bin";
  std::string data(100000, 'q');
  std::ofstream(path, std::ios::binary) << data;
  Subprocess put(
      daemon_->CliArgs({"put", "from-file", "--file=" + path, "--hold=60s"}));
  ASSERT_TRUE(put.WaitForOutput("from-file", absl::Seconds(10)));
  Finished cat = daemon_->Cli({"cat", "from-file"});
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  EXPECT_EQ(cat.out, data);
  ExpectError(daemon_->Cli({"put", "x", "--file=/nonexistent/file"}),
              "cannot open");
}

TEST_F(CliTest, LsShowsEveryBufferAsTableAndJson) {
  Subprocess a(daemon_->CliArgs({"alloc", "4KiB", "--name=first"}));
  ASSERT_TRUE(a.WaitForOutput("first", absl::Seconds(10)));
  auto mine = client_->Attach("first");
  ASSERT_TRUE(mine.ok());
  Finished table = daemon_->Cli({"ls"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("NAME"));
  EXPECT_THAT(table.out, HasSubstr("HOLDERS"));
  EXPECT_THAT(table.out, HasSubstr("OWNER"));
  EXPECT_THAT(table.out, HasSubstr("AGE"));
  EXPECT_THAT(table.out, HasSubstr("first"));

  Finished json = daemon_->Cli({"ls", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto buffers = nlohmann::json::parse(json.out)["buffers"];
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers[0]["name"], "first");
  EXPECT_EQ(buffers[0]["handle"], mine->handle());
  EXPECT_EQ(buffers[0]["size"], 4096);
  EXPECT_EQ(buffers[0]["backing"], "memfd");
  EXPECT_EQ(buffers[0]["holders"], 2);
  EXPECT_EQ(buffers[0]["owner_uid"], ::getuid());
}

TEST_F(CliTest, StatusShowsCapacityAllocatedBuffersClients) {
  client::AllocateOptions dedicated;
  dedicated.size = 5000;
  dedicated.kind = client::Kind::kDedicated;  // charged in whole pages
  auto b = client_->Allocate(dedicated);
  ASSERT_TRUE(b.ok());
  Finished json = daemon_->Cli({"status", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto s = nlohmann::json::parse(json.out);
  EXPECT_EQ(s["capacity_bytes"], uint64_t{2} << 30);
  EXPECT_EQ(s["allocated_bytes"], 8192);
  EXPECT_EQ(s["buffers"], 1);
  EXPECT_EQ(s["clients"], 1);  // this test's client; status opens none
  Finished table = daemon_->Cli({"status"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("capacity"));
  EXPECT_THAT(table.out, HasSubstr("2GiB"));
  EXPECT_THAT(table.out, HasSubstr("8192 bytes"));
}

TEST_F(CliTest, ErrorsAreOneLineNamingTheCause) {
  Subprocess holder(daemon_->CliArgs({"alloc", "4KiB", "--name=mine"}));
  ASSERT_TRUE(holder.WaitForOutput("mine", absl::Seconds(10)));
  ExpectError(daemon_->Cli({"alloc", "4KiB", "--name=mine"}), "taken");
  ExpectError(daemon_->Cli({"alloc", "3GiB"}), "capacity");
  ExpectError(daemon_->Cli({"cat", "missing"}), "no such buffer");
  ExpectError(daemon_->Cli({"alloc", "0"}), "bad size");
  ExpectError(daemon_->Cli({"put", "empty"}, ""), "bad size");
  ExpectError(daemon_->Cli({"alloc", "4KiB", "--name=bad/name"}), "bad name");
  ExpectError(RunToEnd({CliPath(), "--socket=" + daemon_->dir() + "/none.sock",
                        "cat", "x"}),
              "no daemon");
  ExpectError(
      RunToEnd({CliPath(), "--socket=" + daemon_->dir() + "/none.sock", "ls"}),
      "no daemon");
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(daemon_->Cli({}).exit_code, 2);
  EXPECT_EQ(daemon_->Cli({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(daemon_->Cli({"cat"}).exit_code, 2);
  Finished share = daemon_->Cli({"alloc", "4096", "--share=everyone"});
  EXPECT_EQ(share.exit_code, 2);
  EXPECT_THAT(share.err, HasSubstr("bad share"));
  Finished backing = daemon_->Cli({"alloc", "4096", "--backing=disk"});
  EXPECT_EQ(backing.exit_code, 2);
  EXPECT_THAT(backing.err, HasSubstr("bad backing"));
}

TEST(CliDefaultSocketTest, ShmbrokerSocketVariableNamesTheDaemon) {
  TestDaemon daemon;
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  Finished f = RunToEnd({CliPath(), "status", "--json"}, "",
                        {"SHMBROKER_SOCKET=" + daemon.socket()});
  EXPECT_EQ(f.exit_code, 0) << f.err;
}

}  // namespace
}  // namespace shmbroker::testing
