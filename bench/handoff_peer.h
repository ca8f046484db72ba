// HandoffPeer: the consumer of shmbroker-bench's handoff modes, in a
// process of its own, as a real consumer would be.
//
// One handoff: the producer (a bench thread) allocates a named buffer,
// writes every byte and seals it; the consumer, already waiting for that
// name in an Attach with wait (until sealed), gets it, reads every page,
// checks the producer's byte and acks on a pipe; both drop their Buffers,
// which releases the buffer. The producer's time runs from the Allocate to
// the ack: the whole round trip a user pays (docs/performance.md).
//
// Both sides number the buffers in step (PREFIX-0, PREFIX-1, ...), so the
// consumer knows the next name before it exists. The peer is started once
// per bench thread, before the run, and killed after it. Not thread-safe:
// one bench thread owns each peer.
#ifndef SHMBROKER_BENCH_HANDOFF_PEER_H_
#define SHMBROKER_BENCH_HANDOFF_PEER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "shmbroker/client.h"

namespace shmbroker::bench {

class HandoffPeer {
 public:
  // Starts `self --handoff_consumer=PREFIX --socket=SOCKET` and waits up to
  // 10 s for it to connect to the daemon.
  static absl::StatusOr<std::unique_ptr<HandoffPeer>> Start(
      const std::string& self, const std::string& socket,
      const std::string& prefix);
  ~HandoffPeer();  // SIGKILL and reap: the daemon reclaims what it held
  HandoffPeer(const HandoffPeer&) = delete;
  HandoffPeer& operator=(const HandoffPeer&) = delete;

  // One handoff of a buffer made with `options` (its name is set here).
  absl::Status Handoff(client::Client& producer,
                       client::AllocateOptions options);

 private:
  HandoffPeer() = default;
  absl::Status ReadAck(char expected);

  pid_t pid_ = -1;
  UniqueFd acks_;  // the consumer's stdout
  std::string prefix_;
  uint64_t next_ = 0;
};

// The consumer's side, run by `shmbroker-bench --handoff_consumer=PREFIX`:
// connects, writes 'R', then handles PREFIX-0, PREFIX-1, ... until killed.
// Returns an exit code; on an error it says why on stderr and writes 'E'.
int RunHandoffConsumer(const std::string& socket, const std::string& prefix);

}  // namespace shmbroker::bench

#endif  // SHMBROKER_BENCH_HANDOFF_PEER_H_
