// A stand-in for the daemon's fd channel, for the client library's unit
// tests: a real SOCK_SEQPACKET listener beside a socket path on which no
// gRPC server listens, greeting each connection as shmbrokerd does.
#ifndef SHMBROKER_TESTS_CLIENT_FAKE_FD_CHANNEL_H_
#define SHMBROKER_TESTS_CLIENT_FAKE_FD_CHANNEL_H_

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/time/time.h"
#include "common/default_socket.h"
#include "common/fd_channel_io.h"
#include "common/unique_fd.h"
#include "gtest/gtest.h"

namespace shmbroker::client {

inline constexpr absl::Duration kDeadline = absl::Seconds(20);

// The daemon's end of the fd channel, and nothing else.
class FakeFdChannel {
 public:
  FakeFdChannel() {
    char tmpl[] = "/tmp/shmbroker-fake-fd-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    listener_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = FdChannelPath(socket_path());
    std::strcpy(addr.sun_path, path.c_str());
    EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr),
                     sizeof(addr)),
              0);
    EXPECT_EQ(::listen(listener_.get(), 8), 0);
  }
  ~FakeFdChannel() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string socket_path() const { return dir_ + "/broker.sock"; }

  // Accepts the next connection and greets it with `default_lease` and the
  // `features` a daemon names in its Hello (none: an older daemon's).
  UniqueFd Accept(uint64_t default_lease, const std::string& features = "") {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, absl::ToInt64Milliseconds(kDeadline)) != 1) return {};
    UniqueFd socket(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    fdchannel::Hello hello{default_lease, default_lease, {}, features};
    hello.token[0] = static_cast<uint8_t>(default_lease);
    EXPECT_TRUE(fdchannel::SentWhole(
        fdchannel::SendFrame(socket.get(), fdchannel::Encode(hello), -1, 0)));
    return socket;
  }

 private:
  std::string dir_;
  UniqueFd listener_;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_TESTS_CLIENT_FAKE_FD_CHANNEL_H_
