// A client's raw end of the fd channel, for tests that speak its frames
// themselves instead of through the client library: connect to the
// daemon's P.fds socket and read its first frame, a Hello (the connection
// is open) or an ErrorText (it was refused, and says why).
//
// Header-only, libc and common/ only (no gRPC, no gtest), so that the
// ThreadSanitizer build of tests/server can use it. Errors: UNAVAILABLE
// when connect() fails (errno named); the decoder's status when the first
// frame is malformed or missing (a hang-up, or nothing within `timeout`).
#ifndef SHMBROKER_TESTS_COMMON_RAW_FD_CHANNEL_H_
#define SHMBROKER_TESTS_COMMON_RAW_FD_CHANNEL_H_

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/fd_channel_decode.h"
#include "common/fd_channel_io.h"
#include "common/unique_fd.h"

namespace shmbroker::testing {

struct RawFdChannel {
  UniqueFd socket;
  fdchannel::FromDaemon first;  // a Hello or an ErrorText
};

// Connects to the fd-channel socket at `path` and reads the first frame,
// waiting at most `timeout` for it (a daemon that never answers fails the
// test instead of hanging it; the timeout stays on the socket).
inline absl::StatusOr<RawFdChannel> DialFdChannel(
    const std::string& path, absl::Duration timeout = absl::Seconds(10)) {
  RawFdChannel c;
  c.socket = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (!c.socket.valid() ||
      ::connect(c.socket.get(), reinterpret_cast<sockaddr*>(&addr),
                sizeof(addr)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect ", path, ": ", std::strerror(errno)));
  }
  const timeval wait = absl::ToTimeval(timeout);
  ::setsockopt(c.socket.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  fdchannel::Frame frame;
  fdchannel::Received got = fdchannel::RecvFrame(c.socket.get(), &frame, 0);
  absl::StatusOr<fdchannel::FromDaemon> first =
      fdchannel::DecodeFromDaemon(got.envelope, frame);
  if (!first.ok()) return first.status();
  c.first = *std::move(first);
  return c;
}

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_COMMON_RAW_FD_CHANNEL_H_
