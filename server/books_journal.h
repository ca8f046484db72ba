// BooksJournal: the daemon's BookSink (core/books.h). It keeps the books in
// the state directory as a journal, `<dir>/books`, that the next daemon
// replays (Load) to resume.
//
// Why a journal of upserts. Every change the Registry reports is the whole
// new value of one entity (a buffer, a lease, a hold count) or its erasure,
// so a record never depends on an earlier one being read right: replaying
// is applying records in order, a lost or skipped record costs that one
// change, and the latest record of an entity wins. A change costs a
// protobuf serialization, framed into a buffer; Flush, which the Registry
// calls once per hold of its lock that changed the books, writes them all
// in one write(). A write is a few microseconds on the Registry's hot
// path: one per record made a drain step of 64 holds (64 hold records and
// up to 64 buffer erasures) hold the lock for 0.2-0.4 ms.
//
// Why no fsync. The state directory is on tmpfs (/run): the memory it
// describes does not outlive the machine, so neither need the books. What
// must survive is the daemon's death, and a write() that returned is in the
// page cache, which is all there is of a tmpfs file, whatever happens to
// the process next. Changes held back until Flush are lost with the
// process, but nobody has heard of them: the Registry flushes before it
// lets its lock go, and so before any reply.
//
// Torn tails. A daemon SIGKILLed mid-write() (the kernel checks for fatal
// signals between pages) or a write cut short by ENOSPC leaves a partial
// last record. Each record is framed with a magic, its length and a crc32,
// and the file starts with a versioned header, so the loader detects a torn
// tail or a corrupt record, says so, and trusts neither: it skips to the
// next record whose crc checks out. What it replays is validated again as a
// whole (no hold of an unknown lease or buffer, no buffer nobody holds).
//
// Compaction. The journal grows with every change. When the records
// appended since the last rewrite exceed twice what that rewrite wrote plus
// 4096, WantsRewrite asks the Registry to rewrite it. The Registry hands
// its live entities over in steps (BeginRewrite, AddToRewrite, ...,
// FinishRewrite; core/books.h), and every change meanwhile is appended to
// both files, so `books` stays whole until `books.tmp` is renamed over it
// (atomic: a reader sees the old file or the new one). The threshold grows
// with the live books, so the cost of rewriting, amortized over the
// changes, is O(1) per change. Every daemon start rewrites too (Open).
//
// A failed write (ENOSPC, EIO) is counted and logged rate-limited; the
// journal is then missing a change, so WantsRewrite turns true until a
// rewrite succeeds (retried at most once a second: a rewrite on every
// change of a full disk would stall the Registry).
//
// Thread-safe; the BookSink methods are called under the Registry's mutex.
#ifndef SHMBROKER_SERVER_BOOKS_JOURNAL_H_
#define SHMBROKER_SERVER_BOOKS_JOURNAL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "core/books.h"
#include "server/log_rate_limiter.h"

namespace shmbroker {

namespace books::v1 {
class Record;
}  // namespace books::v1

// What Load found besides the books.
struct LoadReport {
  uint32_t version = 0;  // of the file's format; 0: no file, or distrusted
  uint64_t records = 0;  // replayed
  uint64_t skipped = 0;  // corrupt, unparseable or invalid records
  // Entities dropped after the replay as inconsistent (a hold of an unknown
  // lease or buffer, a buffer nobody holds).
  uint64_t dropped = 0;
  uint64_t torn_tail_bytes = 0;  // a partial last record, ignored
  // What was wrong, for the log: at most kMaxProblems lines (the last one
  // says how many more there were).
  std::vector<std::string> problems;
  static constexpr size_t kMaxProblems = 16;
};

class BooksJournal : public BookSink {
 public:
  struct Stats {
    uint64_t records_written = 0;
    uint64_t write_errors = 0;  // appends and rewrites that failed
    uint64_t bytes = 0;         // the journal's current size
    uint64_t rewrites = 0;      // that succeeded, Open's included
  };

  // Creates `dir` (mode 0700; its parent must exist) if missing and writes
  // `initial` as the journal, replacing any there. Errors name the path.
  static absl::StatusOr<std::unique_ptr<BooksJournal>> Open(
      const std::string& dir, const Books& initial);

  // The books in `dir`'s journal: empty if there is none. A file that
  // cannot be trusted at all (bad header) gives empty books too, with the
  // reason in *report; only failing to read it is an error.
  static absl::StatusOr<Books> Load(const std::string& dir, LoadReport* report);
  // As Load, from the file's bytes.
  static Books LoadFromBytes(absl::string_view file, LoadReport* report);

  BooksJournal(const BooksJournal&) = delete;
  BooksJournal& operator=(const BooksJournal&) = delete;
  ~BooksJournal() override;

  void PutBuffer(const BookedBuffer& buffer, uint64_t revision) override;
  void EraseBuffer(Handle handle, uint64_t revision) override;
  void PutLease(const BookedLease& lease) override;
  void EraseLease(LeaseId lease) override;
  void PutHolds(LeaseId lease, Handle handle, uint32_t count) override;
  void PutLastArena(uint64_t arena_id) override;
  void Flush() override;
  bool WantsRewrite() const override;
  bool BeginRewrite(const Books& ids) override;
  bool AddToRewrite(const Books& entities) override;
  bool FinishRewrite() override;

  Stats stats() const;
  const std::string& path() const { return path_; }

 private:
  explicit BooksJournal(std::string dir);

  // Frames record_ into pending_ (written out once it is large).
  void Append() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes pending_ to the journal, and to the rewrite under way.
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BeginRewriteLocked(const Books& ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AddToRewriteLocked(const Books& entities)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FinishRewriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `data`, `records` framed records, to the rewrite under way.
  absl::Status WriteRecords(absl::string_view data, uint64_t records)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if `status` is OK; else gives the rewrite up (`books.tmp` goes;
  // `books` goes on) and reports why.
  bool Done(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void GiveUpRewrite(const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Failed(absl::string_view what, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const std::string path_;
  const std::string tmp_path_;
  mutable absl::Mutex mu_;
  UniqueFd fd_ ABSL_GUARDED_BY(mu_);
  // Reused for every record. Each Put sets every field of its kind, so
  // nothing is cleared (clearing a oneof frees its message): only a change
  // of kind from one record to the next allocates.
  std::unique_ptr<books::v1::Record> record_ ABSL_GUARDED_BY(mu_);
  // Framed records not yet written (Flush), and how many.
  std::string pending_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_records_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t since_rewrite_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rewrite_records_ ABSL_GUARDED_BY(mu_) = 0;
  // The rewrite in progress (`books.tmp`, open from BeginRewrite to
  // FinishRewrite), with the records and bytes written to it so far.
  UniqueFd next_fd_ ABSL_GUARDED_BY(mu_);
  uint64_t next_records_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // A write failed since the last rewrite: the journal misses a change.
  bool missed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_failed_rewrite_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  LogRateLimiter failures_{absl::Seconds(10)};

  std::atomic<uint64_t> records_written_{0};
  std::atomic<uint64_t> write_errors_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> rewrites_{0};
};

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_BOOKS_JOURNAL_H_
