// gRPC connections that stay idle past --idle_connection_timeout are closed
// by the daemon; a client with a lease keeper's stream open is not idle.
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

// Unix sockets bound to `path`: the listener and each accepted connection.
int SocketsOn(const std::string& path) {
  std::ifstream in("/proc/net/unix");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (absl::EndsWith(line, " " + path)) ++n;
  }
  return n;
}

TEST(IdleConnectionTest, IdleGrpcConnectionsAreClosedBusyOnesKept) {
  TestDaemon daemon({"--idle_connection_timeout=300ms"});
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  const std::string path = daemon.socket();
  ASSERT_EQ(SocketsOn(path), 1);  // the listener

  // A client with its lease keeper's KeepAlive stream: never idle.
  auto busy = daemon.Connect();
  ASSERT_TRUE(busy.ok()) << busy.status();
  ASSERT_TRUE((*busy)->Ping().ok());
  // A gRPC-only client that makes one call, then nothing.
  client::ClientOptions options;
  options.socket_path = path;
  options.open_client_connection = false;
  auto idle = client::Client::Connect(options);
  ASSERT_TRUE(idle.ok()) << idle.status();
  ASSERT_TRUE((*idle)->Ping().ok());
  EXPECT_TRUE(WaitFor("both clients connected", [&](std::string* seen) {
    const int n = SocketsOn(path);
    *seen = absl::StrCat(n, " sockets on ", path);
    return n == 3;
  }));

  EXPECT_TRUE(WaitFor("the idle connection closed", [&](std::string* seen) {
    const int n = SocketsOn(path);
    *seen = absl::StrCat(n, " sockets on ", path);
    return n == 2;
  }));
  // The busy client still has its connection and its lease.
  auto status = (*busy)->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->clients, 1u);
  EXPECT_EQ(SocketsOn(path), 2);
  // The idle client just reconnects when it calls again.
  const absl::Status again = (*idle)->Ping();
  EXPECT_TRUE(again.ok()) << again;
}

}  // namespace
}  // namespace shmbroker::testing
