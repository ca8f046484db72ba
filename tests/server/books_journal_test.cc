// BooksJournal (server/books_journal.h), the writing side: what it appends
// and rewrites is what Load reads, it says which directory it cannot use,
// asks for rewrites when it should, and counts the writes that fail. Real
// files in a temporary directory (books_test_util.h).
#include "server/books_journal.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/books_test_util.h"

namespace shmbroker::books_test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

class BooksJournalTest : public BooksDirTest {};

TEST_F(BooksJournalTest, OpenCreatesThePrivateDirectoryAndAnEmptyJournal) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(journal->path(), path());
  EXPECT_EQ(journal->stats().bytes, ReadFile(path()).size());
  EXPECT_EQ(journal->stats().rewrites, 1u);
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(Books()));
  EXPECT_EQ(report.version, 1u);
  EXPECT_THAT(report.problems, IsEmpty());
}

TEST_F(BooksJournalTest, EveryRecordTypeRoundTrips) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  Books expected = Sample();
  Report(expected, *journal);
  const Books reported = expected;
  // Changes after the first report: a seal, a renewal, a hold count
  // changed, an erased buffer and lease (holds first, as the Registry
  // does), and a later arena.
  BookedBuffer sealed = expected.buffers[6];
  sealed.info.sealed = true;
  journal->PutBuffer(sealed, 43);
  expected.buffers[6] = sealed;
  BookedLease renewed = expected.leases[4];
  renewed.deadline += absl::Seconds(5);
  journal->PutLease(renewed);
  expected.leases[4] = renewed;
  journal->PutHolds(8, 6, 1);
  expected.holds[{8, 6}] = 1;
  journal->PutLease(Lease(9));
  journal->PutBuffer(Buffer(10), 44);
  journal->PutHolds(9, 10, 1);
  journal->PutHolds(9, 10, 0);
  journal->EraseBuffer(10, 45);
  journal->EraseLease(9);
  journal->PutLastArena(5);
  expected.last_handle = 10;
  expected.last_lease = 9;
  expected.last_arena = 5;
  expected.revision = 45;
  // Nothing more is written until Flush; then every change, in one write.
  EXPECT_EQ(journal->stats().records_written, 1u + 10u);
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(reported));
  journal->Flush();

  Books loaded = Load(&report);
  EXPECT_EQ(Describe(loaded), Describe(expected));
  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_EQ(report.skipped, 0u);
  EXPECT_EQ(report.dropped, 0u);
  EXPECT_EQ(report.torn_tail_bytes, 0u);
  // Open wrote one record (PutLastArena 0); every call one more.
  const uint64_t appended = 10 + 10;
  EXPECT_EQ(report.records, 1 + appended);
  EXPECT_EQ(journal->stats().records_written, 1 + appended);
  EXPECT_EQ(journal->stats().bytes, ReadFile(path()).size());
  EXPECT_EQ(journal->stats().write_errors, 0u);
}

TEST_F(BooksJournalTest, RewriteReplacesHistory) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  Books books = Sample();
  // Much history: buffers made and gone.
  for (Handle h = 100; h < 400; ++h) {
    journal->PutBuffer(Buffer(h), h);
    journal->PutHolds(4, h, 1);
    journal->PutHolds(4, h, 0);
    journal->EraseBuffer(h, h);
  }
  journal->Flush();
  books.last_handle = 399;
  books.revision = 400;
  books.last_lease = 12;  // a lease handed out and gone since
  const uint64_t before = journal->stats().bytes;
  journal->Rewrite(books);
  EXPECT_LT(journal->stats().bytes, before);
  EXPECT_EQ(journal->stats().rewrites, 2u);
  EXPECT_EQ(journal->stats().bytes, ReadFile(path()).size());
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  EXPECT_THAT(report.problems, IsEmpty());
  // Appends go on in the rewritten file.
  journal->PutHolds(8, 3, 2);
  journal->Flush();
  books.holds[{8, 3}] = 2;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  // And a new daemon's Open compacts what it loaded.
  journal.reset();
  journal = Open(books);
  ASSERT_NE(journal, nullptr);
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  EXPECT_FALSE(journal->WantsRewrite());
}

TEST_F(BooksJournalTest, ARewriteInStepsKeepsTheChangesMadeMeanwhile) {
  Books books = Sample();
  auto journal = Open(books);
  ASSERT_NE(journal, nullptr);
  // Begin with the ids only, then the entities a few at a time, as the
  // Registry hands them over, with changes between the steps.
  ASSERT_TRUE(journal->BeginRewrite(books));
  EXPECT_FALSE(journal->WantsRewrite());  // one is under way
  Books step;
  step.buffers = {{3, books.buffers.at(3)}};
  step.revision = books.revision;
  ASSERT_TRUE(journal->AddToRewrite(step));
  // Buffer 3 changes after its step, 5 goes before its own, 7 is new.
  BookedBuffer sealed = books.buffers.at(3);
  sealed.info.sealed = true;
  journal->PutBuffer(sealed, 43);
  journal->PutHolds(8, 5, 0);
  journal->EraseBuffer(5, 44);
  journal->PutBuffer(Buffer(7), 45);
  journal->PutHolds(4, 7, 1);
  journal->Flush();
  books.buffers[3] = sealed;
  books.buffers.erase(5);
  books.holds.erase({8, 5});
  books.buffers[7] = Buffer(7);
  books.holds[{4, 7}] = 1;
  books.last_handle = 7;
  books.revision = 45;
  // A daemon killed now: the old journal, with every change, is the books.
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  step = Books();
  step.buffers = {{6, books.buffers.at(6)}};
  step.leases = books.leases;
  for (const auto& [key, count] : books.holds) {
    if (key.second != 7) step.holds[key] = count;
  }
  step.revision = books.revision;
  ASSERT_TRUE(journal->AddToRewrite(step));
  ASSERT_TRUE(journal->FinishRewrite());
  EXPECT_EQ(journal->stats().rewrites, 2u);
  EXPECT_EQ(journal->stats().bytes, ReadFile(path()).size());
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/books.tmp"));
  // Appends go on in the new file.
  journal->PutHolds(8, 6, 1);
  journal->Flush();
  books.holds[{8, 6}] = 1;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
}

TEST_F(BooksJournalTest, OpenNamesTheDirectoryThatFails) {
  const std::string file = root_ + "/a-file";
  WriteFile(file, "x");
  {
    auto journal = BooksJournal::Open(file + "/state", Books());
    ASSERT_FALSE(journal.ok());
    EXPECT_THAT(journal.status().message(), HasSubstr(file + "/state"));
    EXPECT_THAT(journal.status().message(), HasSubstr("Not a directory"));
  }
  {
    auto journal = BooksJournal::Open(root_ + "/missing/state", Books());
    ASSERT_FALSE(journal.ok());
    EXPECT_THAT(journal.status().message(),
                HasSubstr("create the state directory " + root_ +
                          "/missing/state: No such file or directory"));
  }
  {
    auto journal = BooksJournal::Open(file, Books());
    ASSERT_FALSE(journal.ok());
    EXPECT_THAT(journal.status().message(),
                HasSubstr(file + " is not a directory"));
  }
}

TEST_F(BooksJournalTest, WantsRewriteAfterTwiceTheSnapshotPlus4096) {
  Books books = Sample();
  auto journal = Open(books);
  ASSERT_NE(journal, nullptr);
  // The snapshot: 3 buffers, 2 leases, 4 holds, the last arena.
  const uint64_t snapshot = 3 + 2 + 4 + 1;
  ASSERT_EQ(journal->stats().records_written, snapshot);
  for (uint64_t i = 0; i < 2 * snapshot + 4096; ++i) {
    journal->PutHolds(4, 3, 1 + i % 2);
  }
  EXPECT_FALSE(journal->WantsRewrite());
  journal->PutHolds(4, 3, 1);
  EXPECT_TRUE(journal->WantsRewrite());
  journal->Rewrite(books);
  EXPECT_FALSE(journal->WantsRewrite());
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  EXPECT_EQ(report.records, snapshot);
}

// Sample with one more lease: a larger snapshot.
Books Larger() {
  Books books = Sample();
  books.leases[12] = Lease(12);
  books.last_lease = 12;
  return books;
}

// In a child process: makes writes fail and checks what the journal does.
// Returns 0 or the number of the check that failed.
int FillUp(BooksJournal& journal, const std::string& dir) {
  std::signal(SIGXFSZ, SIG_IGN);
  const rlimit limit = {journal.stats().bytes, RLIM_INFINITY};
  if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 10;
  if (journal.WantsRewrite()) return 11;
  journal.PutHolds(4, 3, 7);
  journal.Flush();
  if (journal.stats().write_errors != 1) return 12;
  if (!journal.WantsRewrite()) return 13;
  // The rewrite fails too (the snapshot is larger than the limit): the old
  // file stays, and so does the wish, retried at most once a second.
  journal.Rewrite(Larger());
  if (journal.stats().write_errors != 2) return 14;
  if (journal.WantsRewrite()) return 15;
  if (::access((dir + "/books.tmp").c_str(), F_OK) == 0) return 16;
  // With room again, the rewrite works and the wish is gone.
  const rlimit none = {RLIM_INFINITY, RLIM_INFINITY};
  if (::setrlimit(RLIMIT_FSIZE, &none) != 0) return 17;
  journal.Rewrite(Larger());
  if (journal.WantsRewrite()) return 18;
  if (journal.stats().rewrites != 2) return 19;
  return 0;
}

// Writes fail once the file would pass RLIMIT_FSIZE (EFBIG, SIGXFSZ
// ignored), as they would on a full tmpfs: counted, and the journal asks
// for a rewrite. In a child process, since the limit is the process's.
TEST_F(BooksJournalTest, AFailedWriteIsCountedAndAsksForARewrite) {
  auto journal = Open(Sample());
  ASSERT_NE(journal, nullptr);
  EXPECT_EXIT(std::_Exit(FillUp(*journal, dir_)), ::testing::ExitedWithCode(0),
              "");
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(Larger()));
}

}  // namespace
}  // namespace shmbroker::books_test
