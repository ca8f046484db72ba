// ConnectionCloser: ends client connections in the Registry off the fd
// channel's event loop. Ending a connection lets go of everything it held
// (Registry::CloseConnection) in steps of --reclaim_batch buffers, letting
// other calls in between: for a client that held 100,000 buffers that takes
// a good part of a second, during which the event loop would read no
// other client's frames and accept nobody. So the event loop only forgets
// the socket and queues the connection here; one thread ends the queued
// connections in turn, then records the reclaim's latency (from when the
// close was noticed), its metrics and its log line.
// Thread-safe. Before Start() and after Stop(), Close() ends the connection
// on the caller's thread; Stop() ends what is queued, then returns.
#ifndef SHMBROKER_SERVER_CONNECTION_CLOSER_H_
#define SHMBROKER_SERVER_CONNECTION_CLOSER_H_

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "server/client_connection.h"
#include "server/metrics.h"
#include "server/reclaim_latency.h"

namespace shmbroker {

class ConnectionCloser {
 public:
  // Nothing is owned; all must outlive the closer.
  ConnectionCloser(Registry* registry, Metrics* metrics,
                   ReclaimLatencies* latencies);
  ~ConnectionCloser();  // Stop()s
  ConnectionCloser(const ConnectionCloser&) = delete;
  ConnectionCloser& operator=(const ConnectionCloser&) = delete;

  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends `connection` in the Registry (its socket is already closed);
  // `noticed`: when the close was noticed, `why`: for the log.
  void Close(std::shared_ptr<ClientConnection> connection, CloseReason reason,
             std::string why, absl::Time noticed) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    std::shared_ptr<ClientConnection> connection;
    CloseReason reason;
    std::string why;
    absl::Time noticed;
  };
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void End(Pending& pending);

  Registry* const registry_;
  Metrics* const metrics_;
  ReclaimLatencies* const latencies_;
  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_CONNECTION_CLOSER_H_
