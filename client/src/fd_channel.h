// FdChannel: the client's end of the fd channel (common/fd_channel_protocol.h),
// one connected socket. Connecting it opens this process's client
// connection in the daemon, and its closing (exit, crash, SIGKILL) ends it.
// It reads the daemon's Hello, keeps the fds that arrive for grants until
// their calls claim them (rule 1), and sends the one-way frames, counting
// them for the calls' metadata (rule 2). After a daemon restart the
// Resumer (client/src/resumer.h) opens a new one. Internal to the client
// library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_
#define SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
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
  // The Hello's token, as calls carry it.
  const std::string& token_hex() const { return token_hex_; }
  // The socket, e.g. to poll for hang-up.
  int socket() const { return socket_.get(); }

  // The fd the daemon sent for `grant_id`, waiting until `deadline` for it
  // (it is sent before the reply, so it is normally already waiting). Fds
  // read on the way that belong to other grants are kept for their calls.
  absl::StatusOr<UniqueFd> TakeFd(uint64_t grant_id, absl::Time deadline);
  // Sends a one-way frame without blocking; false when the channel cannot
  // take it now (full, or the daemon is gone).
  bool Send(const fdchannel::FromClient& message);
  // Sends a Present frame with `fd` (a one-way frame), waiting until
  // `deadline` for room; UNAVAILABLE when the daemon is gone.
  absl::Status Present(uint64_t handle, uint64_t lease, int fd,
                       absl::Time deadline);
  // How many one-way frames were sent so far.
  uint64_t frames_sent() const { return frames_sent_.load(); }
  // After the daemon hung up: reads what it sent before (keeping grant fds
  // for their calls) and returns the ErrorText it closed with, if any.
  std::optional<std::string> ClosingText() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  FdChannel() = default;
  absl::Status Greet(const std::string& socket_path, absl::Duration timeout);
  // Reads one waiting frame, keeping a grant's fd or an ErrorText; false
  // when nothing is waiting or the channel is closed (then `*closed`).
  bool ReadOneLocked(bool* closed, absl::Status* error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  UniqueFd socket_;
  fdchannel::Hello hello_;
  std::string token_hex_;
  std::atomic<uint64_t> frames_sent_{0};
  absl::Mutex mu_;  // one reader at a time
  absl::flat_hash_map<uint64_t, UniqueFd> unclaimed_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> closing_text_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_
