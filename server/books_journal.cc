#include "server/books_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "server/books_format.h"
#include "server/logging.h"
#include "shmbroker/books/v1/books.pb.h"

namespace shmbroker {
namespace {

namespace pb = books::v1;

// A rewrite, or a run of changes, writes what it has framed once it is
// this large.
constexpr size_t kWriteChunk = size_t{1} << 20;

// Writes all of `data` or says why not (a short write is ENOSPC's).
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("write ", path));
    }
    if (n == 0) return ErrnoToStatus(ENOSPC, absl::StrCat("write ", path));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

BooksJournal::BooksJournal(std::string dir)
    : dir_(std::move(dir)),
      path_(absl::StrCat(dir_, "/books")),
      tmp_path_(absl::StrCat(dir_, "/books.tmp")),
      record_(std::make_unique<pb::Record>()) {}

BooksJournal::~BooksJournal() {
  absl::MutexLock lock(&mu_);
  FlushLocked();
}

absl::StatusOr<std::unique_ptr<BooksJournal>> BooksJournal::Open(
    const std::string& dir, const Books& initial) {
  if (dir.empty()) return absl::InvalidArgumentError("empty state directory");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno,
                         absl::StrCat("create the state directory ", dir));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stat the state directory ", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the state directory ", dir, " is not a directory"));
  }
  std::unique_ptr<BooksJournal> journal(new BooksJournal(dir));
  absl::MutexLock lock(&journal->mu_);
  absl::Status s = journal->BeginRewriteLocked(initial);
  if (s.ok()) s = journal->AddToRewriteLocked(initial);
  if (s.ok()) s = journal->FinishRewriteLocked();
  if (!s.ok()) {
    journal->next_fd_.reset();
    ::unlink(journal->tmp_path_.c_str());
    return s;
  }
  return journal;
}

void BooksJournal::PutBuffer(const BookedBuffer& buffer, uint64_t revision) {
  absl::MutexLock lock(&mu_);
  books_format::ToProto(buffer, revision, record_->mutable_put_buffer());
  Append();
}

void BooksJournal::EraseBuffer(Handle handle, uint64_t revision) {
  absl::MutexLock lock(&mu_);
  pb::EraseBuffer* r = record_->mutable_erase_buffer();
  r->set_handle(handle);
  r->set_revision(revision);
  Append();
}

void BooksJournal::PutLease(const BookedLease& lease) {
  absl::MutexLock lock(&mu_);
  books_format::ToProto(lease, record_->mutable_put_lease());
  Append();
}

void BooksJournal::EraseLease(LeaseId lease) {
  absl::MutexLock lock(&mu_);
  record_->mutable_erase_lease()->set_id(lease);
  Append();
}

void BooksJournal::PutHolds(LeaseId lease, Handle handle, uint32_t count) {
  absl::MutexLock lock(&mu_);
  pb::PutHolds* r = record_->mutable_put_holds();
  r->set_lease(lease);
  r->set_handle(handle);
  r->set_count(count);
  Append();
}

void BooksJournal::PutLastArena(uint64_t arena_id) {
  absl::MutexLock lock(&mu_);
  record_->mutable_put_last_arena()->set_arena_id(arena_id);
  Append();
}

void BooksJournal::Append() {
  if (absl::Status s = books_format::AppendRecord(*record_, &pending_);
      !s.ok()) {
    Failed("append to", s);
    return;
  }
  ++pending_records_;
  ++since_rewrite_;
  if (pending_.size() >= kWriteChunk) FlushLocked();
}

void BooksJournal::Flush() {
  absl::MutexLock lock(&mu_);
  FlushLocked();
}

void BooksJournal::FlushLocked() {
  if (pending_.empty()) return;
  // A rewrite in progress gets every change too, in the same order.
  if (next_fd_.valid()) {
    if (absl::Status s = WriteAll(next_fd_.get(), pending_, tmp_path_);
        s.ok()) {
      next_records_ += pending_records_;
      next_bytes_ += pending_.size();
    } else {
      GiveUpRewrite(s);
    }
  }
  const absl::Status s = WriteAll(fd_.get(), pending_, path_);
  const uint64_t records = pending_records_;
  const uint64_t bytes = pending_.size();
  pending_.clear();
  pending_records_ = 0;
  if (!s.ok()) {
    // Part of them may have been written: the size is the file's.
    struct stat st;
    if (::fstat(fd_.get(), &st) == 0) {
      bytes_.store(static_cast<uint64_t>(st.st_size),
                   std::memory_order_relaxed);
    }
    Failed("append to", s);
    return;
  }
  records_written_.fetch_add(records, std::memory_order_relaxed);
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

bool BooksJournal::WantsRewrite() const {
  absl::MutexLock lock(&mu_);
  if (next_fd_.valid()) return false;  // one is under way
  if (missed_) return absl::Now() - last_failed_rewrite_ >= absl::Seconds(1);
  return since_rewrite_ > 2 * rewrite_records_ + 4096;
}

// Each writes what was held back first, in order; a rewrite that fails
// there is given up (and reported) already.
bool BooksJournal::BeginRewrite(const Books& ids) {
  absl::MutexLock lock(&mu_);
  FlushLocked();
  return Done(BeginRewriteLocked(ids));
}

bool BooksJournal::AddToRewrite(const Books& entities) {
  absl::MutexLock lock(&mu_);
  FlushLocked();
  return next_fd_.valid() && Done(AddToRewriteLocked(entities));
}

bool BooksJournal::FinishRewrite() {
  absl::MutexLock lock(&mu_);
  FlushLocked();
  return next_fd_.valid() && Done(FinishRewriteLocked());
}

bool BooksJournal::Done(const absl::Status& status) {
  if (status.ok()) return true;
  GiveUpRewrite(status);
  return false;
}

void BooksJournal::GiveUpRewrite(const absl::Status& why) {
  if (next_fd_.valid()) {
    next_fd_.reset();
    ::unlink(tmp_path_.c_str());
  }
  last_failed_rewrite_ = absl::Now();
  Failed("rewrite", why);
}

absl::Status BooksJournal::BeginRewriteLocked(const Books& ids) {
  next_fd_ = UniqueFd(::open(
      tmp_path_.c_str(),
      O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!next_fd_.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("create ", tmp_path_));
  }
  next_records_ = 0;
  next_bytes_ = 0;
  std::string out = books_format::Header();
  uint64_t records = 0;
  absl::Status status;
  // The last ids first: a Put of a live entity with that id, added later,
  // wins over the erase that carries it.
  books_format::IdRecords(ids, [&](const pb::Record& record) {
    if (status.ok()) status = books_format::AppendRecord(record, &out);
    ++records;
  });
  if (!status.ok()) return status;
  return WriteRecords(out, records);
}

absl::Status BooksJournal::AddToRewriteLocked(const Books& entities) {
  if (!next_fd_.valid()) {
    return absl::FailedPreconditionError("no rewrite under way");
  }
  std::string out;
  uint64_t records = 0;
  absl::Status status;
  // Frames each record into `out`, writing `out` out when it is large.
  books_format::EntityRecords(entities, [&](const pb::Record& record) {
    if (!status.ok()) return;
    status = books_format::AppendRecord(record, &out);
    ++records;
    if (status.ok() && out.size() >= kWriteChunk) {
      status = WriteRecords(out, records);
      out.clear();
      records = 0;
    }
  });
  if (!status.ok()) return status;
  return WriteRecords(out, records);
}

absl::Status BooksJournal::WriteRecords(absl::string_view data,
                                        uint64_t records) {
  if (absl::Status s = WriteAll(next_fd_.get(), data, tmp_path_); !s.ok()) {
    return s;
  }
  next_records_ += records;
  next_bytes_ += data.size();
  return absl::OkStatus();
}

absl::Status BooksJournal::FinishRewriteLocked() {
  if (!next_fd_.valid()) {
    return absl::FailedPreconditionError("no rewrite under way");
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    return ErrnoToStatus(errno,
                         absl::StrCat("rename ", tmp_path_, " to ", path_));
  }
  // The fd now names `books` itself: appends go on from here. It has had
  // every change since BeginRewrite, so nothing is missing any more.
  fd_ = std::move(next_fd_);
  since_rewrite_ = 0;
  rewrite_records_ = next_records_;
  missed_ = false;
  records_written_.fetch_add(next_records_, std::memory_order_relaxed);
  bytes_.store(next_bytes_, std::memory_order_relaxed);
  rewrites_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

void BooksJournal::Failed(absl::string_view what, const absl::Status& status) {
  missed_ = true;
  write_errors_.fetch_add(1, std::memory_order_relaxed);
  uint64_t suppressed = 0;
  if (failures_.Allow(&suppressed)) {
    spdlog::error(
        "books journal: could not {} {}: {}; a daemon restarted now would "
        "miss changes until a rewrite succeeds{}",
        what, path_, status.message(), SuppressedNote(suppressed));
  }
}

BooksJournal::Stats BooksJournal::stats() const {
  return {
      .records_written = records_written_.load(std::memory_order_relaxed),
      .write_errors = write_errors_.load(std::memory_order_relaxed),
      .bytes = bytes_.load(std::memory_order_relaxed),
      .rewrites = rewrites_.load(std::memory_order_relaxed),
  };
}

}  // namespace shmbroker
