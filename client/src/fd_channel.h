// FdChannel: the client's end of the fd channel (common/fd_channel_protocol.h).
// Connecting it is what opens this process's client connection in the
// daemon, and its closing (exit, crash, SIGKILL) is what ends it. It reads
// the daemon's Hello, keeps the fds that arrive for grants until their calls
// claim them (rule 1), and sends the one-way frames, counting them for the
// calls' metadata (rule 2). Owns the socket. Internal to the client library.
// Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_
#define SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"

namespace shmbroker::client {

class FdChannel {
 public:
  // Connects to the fd channel beside `socket_path` and waits up to
  // `timeout` for the daemon's Hello. UNAVAILABLE or PERMISSION_DENIED
  // (with a hint) when it cannot connect; UNAVAILABLE when the daemon
  // refuses or is not of this protocol version.
  static absl::StatusOr<std::unique_ptr<FdChannel>> Open(
      const std::string& socket_path, absl::Duration timeout);

  const fdchannel::Hello& hello() const { return hello_; }

  // The fd the daemon sent for `grant_id`, waiting until `deadline` for it
  // (it is sent before the reply, so it is normally already waiting). Fds
  // read on the way that belong to other grants are kept for their calls.
  absl::StatusOr<UniqueFd> TakeFd(uint64_t grant_id, absl::Time deadline);
  // Sends a one-way frame without blocking; false when the channel cannot
  // take it now (full, or the daemon is gone).
  bool Send(const fdchannel::FromClient& message);
  // How many one-way frames were sent so far.
  uint64_t frames_sent() const { return frames_sent_.load(); }

 private:
  FdChannel() = default;
  absl::Status Greet(const std::string& socket_path, absl::Duration timeout);

  UniqueFd socket_;
  fdchannel::Hello hello_;
  std::atomic<uint64_t> frames_sent_{0};
  absl::Mutex mu_;  // one reader at a time
  absl::flat_hash_map<uint64_t, UniqueFd> unclaimed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_
