// Resumer: brings a client connection back after its daemon restarts
// (docs/api.md, "Restart"). Its thread polls the fd channel for hang-up
// alone (POLLRDHUP: grant frames, which TakeFd reads, do not wake it).
//
// When the daemon goes away (the channel closes without the daemon saying
// it closed this connection on purpose: that connection is over, as
// before), it pauses the LeaseKeeper (which then gives up each lease whose
// TTL runs out) and reconnects with backoff (20 ms, doubling to 1 s, with
// jitter) to the same socket path, for as long as the connection lives.
// Once a daemon greets it: it presents every live Buffer whose lease is
// still kept (one Present frame with the fd each), calls Resume with the
// kept leases and the presented handles, makes the new fd channel the
// connection's, and resumes the keeper with the adopted leases (and the new
// default lease); the refused ones are reported lost. Releases made while
// the daemon was away are sent then.
//
// Internal to the client library. Thread-safe; the destructor stops the
// thread (waiting at most for an attempt's greeting or present, which are
// bounded by the call timeout; a Resume call in flight is cancelled).
#ifndef SHMBROKER_CLIENT_SRC_RESUMER_H_
#define SHMBROKER_CLIENT_SRC_RESUMER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/src/connection.h"
#include "common/unique_fd.h"
#include "shmbroker/client.h"

namespace shmbroker::client {

class Resumer {
 public:
  // `connection` must outlive the Resumer, and have a client connection.
  // `on_resumed` (may be empty) runs on the Resumer's thread.
  Resumer(Connection* connection,
          std::function<void(const ResumeReport&)> on_resumed);
  ~Resumer();
  Resumer(const Resumer&) = delete;
  Resumer& operator=(const Resumer&) = delete;

  // How many times the connection was resumed.
  uint64_t resumes() const ABSL_LOCKS_EXCLUDED(mu_);

  // Whether a channel that closed with `text` (its last ErrorText, if any)
  // means the daemon went away, rather than that it ended this connection
  // on purpose (its default lease ended, or a protocol error).
  static bool DaemonWentAway(const std::optional<std::string>& text);

 private:
  void Run();
  // Waits for `channel` to hang up; false when stopping.
  bool AwaitHangup(const FdChannel& channel);
  // Sleeps; false when stopping.
  bool Sleep(absl::Duration duration);
  // One attempt: connect, present, Resume, swap.
  absl::StatusOr<ResumeReport> TryResume(absl::Time went_away);
  // The Resume call on `channel`, cancellable by the destructor.
  grpc::Status CallResume(const FdChannel& channel,
                          const v1::ResumeRequest& request,
                          v1::ResumeResponse* response);

  Connection* const connection_;
  const std::function<void(const ResumeReport&)> on_resumed_;
  UniqueFd wake_;  // an eventfd, written to stop the thread

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* call_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t resumes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: started once the rest exists
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_RESUMER_H_
