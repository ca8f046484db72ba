// FdChannel: the client's end of the fd channel (common/fd_channel_protocol.h),
// one connected socket. Connecting it opens this process's client
// connection in the daemon, and its closing (exit, crash, SIGKILL) ends it.
// It reads the daemon's Hello, keeps the fds that arrive for grants until
// their calls claim them (rule 1), sends the one-way frames, counting them
// for the calls' metadata (rule 2), and makes the calls that go on the fd
// channel (Allocate and Attach), matching each Reply to its call by id.
// After a daemon restart the Resumer (client/src/resumer.h) opens a new
// one. Internal to the client library. Thread-safe.
//
// Reading. Several threads may wait for something from the daemon at once
// (a grant's fd, a reply), and whatever arrives may be another's. One
// thread at a time is the reader: it polls the socket without the lock and
// reads under it, keeping what it reads for whoever it belongs to; the
// others wait on the lock's condition for their item or for the reader to
// stop, and then read themselves. Nobody else reads while a reader polls,
// so nothing it waits for can be taken from under it.
#ifndef SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_
#define SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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
  absl::StatusOr<UniqueFd> TakeFd(uint64_t grant_id, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Makes `call` (its id is chosen here) and waits until `deadline` for its
  // Reply. UNAVAILABLE when the daemon closed the channel;
  // DEADLINE_EXCEEDED when no reply came in time, and then the reply, if it
  // comes, goes to the orphan handler.
  absl::StatusOr<fdchannel::Reply> Call(fdchannel::Call call,
                                        absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Called, under this channel's lock, with the OK reply of a call that gave
  // up waiting; returns the grant id whose fd to close (0: none). It must
  // give the grant's hold back without reading this channel. Set before
  // any Call.
  void SetOrphanHandler(std::function<uint64_t(const fdchannel::Reply&)> h) {
    orphan_handler_ = std::move(h);
  }
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
  // What a Reply that is not OK says, as a status.
  static absl::Status StatusOf(const fdchannel::Reply& reply);

 private:
  FdChannel() = default;
  absl::Status Greet(const std::string& socket_path, absl::Duration timeout);
  // Reads (as the reader, see above) until `ready` holds, the deadline
  // passes (DEADLINE_EXCEEDED with `late`), or the channel closes or breaks.
  absl::Status ReadUntilLocked(const std::function<bool()>& ready,
                               absl::Time deadline, absl::string_view late)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads one waiting frame, keeping a grant's fd, a reply or an ErrorText;
  // false when nothing is waiting or the channel is closed or broken.
  bool ReadOneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why nothing more will come, once the channel closed or broke.
  absl::Status GoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends a frame (and payload) with `fd`, waiting until `deadline` for room.
  absl::Status SendWaiting(const fdchannel::Frame& frame,
                           absl::string_view payload, int fd,
                           absl::Time deadline, absl::string_view what);

  UniqueFd socket_;
  fdchannel::Hello hello_;
  std::string token_hex_;
  std::atomic<uint64_t> frames_sent_{0};
  std::atomic<uint64_t> next_call_{1};
  std::function<uint64_t(const fdchannel::Reply&)> orphan_handler_;
  absl::Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;  // a thread polls as reader
  bool closed_ ABSL_GUARDED_BY(mu_) = false;   // end of stream
  absl::Status broken_ ABSL_GUARDED_BY(mu_);   // a frame we cannot read
  absl::flat_hash_map<uint64_t, UniqueFd> unclaimed_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, fdchannel::Reply> replies_ ABSL_GUARDED_BY(mu_);
  // Calls that gave up waiting: their replies go to the orphan handler.
  absl::flat_hash_set<uint64_t> abandoned_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> closing_text_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_FD_CHANNEL_H_
