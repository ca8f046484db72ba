// Restart: how a daemon keeps its books in the state directory and takes
// its predecessor's back (docs/operations.md, "Restarting and upgrading").
//
// The state directory (--state_dir, "state" beside the socket by default;
// tmpfs under /run: the memory does not survive a reboot, and neither need
// the books) holds the books journal (server/books_journal.h) and the
// instance id, which names this lineage of daemons in POSIX shm names so
// that a successor knows which names are its predecessors' and no other
// daemon's. At start, Restart loads the journal, restores it into the
// Registry (core/registry_restore.cc), removes POSIX names of the instance
// that the books do not account for (a daemon killed between creating one
// and booking it), rewrites the journal from the restored books and makes
// it the Registry's sink. Once the grace (--restart_grace) has passed, what
// nobody took back is dropped. Thread-safe after Begin.
#ifndef SHMBROKER_SERVER_RESTART_H_
#define SHMBROKER_SERVER_RESTART_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "server/books_journal.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/timer_thread.h"

namespace shmbroker {

class Restart {
 public:
  // The instance id kept in `state_dir` (created, mode 0700, with a new
  // random id if missing): 16 hex digits. Errors name the path.
  static absl::StatusOr<std::string> InstanceId(const std::string& state_dir);

  // Loads and restores the books in config.state_dir into `registry` (which
  // has its pooling set up and no connection yet), logging what was
  // restored and, loudly, what was skipped; then opens the journal. Errors:
  // the journal cannot be written (the daemon should not start).
  static absl::StatusOr<std::unique_ptr<Restart>> Begin(
      const ServerConfig& config, Registry* registry, Metrics* metrics);
  ~Restart();

  // Starts the grace timer.
  void Start();
  // The daemon is stopping for a restart (SIGTERM): the timer stops, and
  // the shutdown's releases are not booked (Registry::StopBookingForRestart).
  void Stop();

  const BooksJournal& journal() const { return *journal_; }

 private:
  Restart(Registry* registry, Metrics* metrics,
          std::unique_ptr<BooksJournal> journal, absl::Time grace_end);
  absl::Time Step();

  Registry* const registry_;
  Metrics* const metrics_;
  const std::unique_ptr<BooksJournal> journal_;
  const absl::Time grace_end_;
  bool grace_over_ = false;  // only the timer's thread touches it
  TimerThread timer_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_RESTART_H_
