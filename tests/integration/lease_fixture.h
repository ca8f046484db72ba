// LeaseTest: a daemon with lease limits small enough to reach, a connected
// client, and ways to speak to the daemon without the library (a raw stub,
// a raw session). Shared by the lease tests.
#ifndef SHMBROKER_TESTS_INTEGRATION_LEASE_FIXTURE_H_
#define SHMBROKER_TESTS_INTEGRATION_LEASE_FIXTURE_H_

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd_channel_protocol.h"
#include "gtest/gtest.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {

// The KeepAlive budget of every client connection of LeaseTest's daemon.
inline constexpr int kKeepAlivesPerSecond = 200;

inline client::AllocateOptions Sized(uint64_t size, uint64_t lease_id) {
  client::AllocateOptions options;
  options.size = size;
  options.lease_id = lease_id;
  return options;
}

class LeaseTest : public DaemonTest {
 protected:
  // Default leases of 5 s, renewed every ~1.7 s: a loaded machine running
  // an ASan build does not starve a renewal that long, so only the leases
  // a test lets lapse expire.
  std::vector<std::string> DaemonFlags() override {
    return {"--lease_min_ttl=100ms", "--lease_default_ttl=5s",
            "--max_leases_per_client=64",
            absl::StrCat("--keepalive_max_per_second=", kKeepAlivesPerSecond)};
  }

  client::DaemonStatus Status() {
    auto status = client_->Status();
    EXPECT_TRUE(status.ok()) << status.status();
    return status.value_or(client::DaemonStatus{});
  }

  // Nothing allocated, and only client_'s connection and default lease left.
  static bool AllReclaimed(const client::DaemonStatus& s) {
    return s.buffers == 0 && s.allocated_bytes == 0 && s.holds == 0 &&
           s.clients == 1 && s.leases == 1;
  }

  ::testing::AssertionResult WaitForStatus(
      const std::string& what,
      const std::function<bool(const client::DaemonStatus&)>& condition) {
    return testing::WaitForStatus(*client_, what, condition);
  }

  std::vector<std::string> Worker(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {LEASE_WORKER_PATH, daemon_->socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // A raw gRPC stub to the daemon.
  std::unique_ptr<v1::Broker::Stub> RawStub() {
    return v1::Broker::NewStub(grpc::CreateChannel(
        "unix:" + daemon_->socket(), grpc::InsecureChannelCredentials()));
  }

  // A client connection of our own, spoken to without the library: its fd
  // channel (kept open while this lives), token and a stub.
  struct RawSession {
    explicit RawSession(LeaseTest& test)
        : fd(ConnectRawFdChannel(test.daemon_->socket(), &token)),
          stub(test.RawStub()) {}
    ~RawSession() { ::close(fd); }
    void Prepare(grpc::ClientContext* ctx) const {
      ctx->AddMetadata(fdchannel::kConnectionTokenKey, token);
    }
    std::string token;
    int fd;
    std::unique_ptr<v1::Broker::Stub> stub;
  };
};

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_LEASE_FIXTURE_H_
