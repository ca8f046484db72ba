// BooksJournal::Load (server/books_journal_load.cc): torn tails, corrupt
// records and bad headers are detected and reported, nothing inconsistent
// is trusted, and the first format's fixture reads as it always has. Real
// files in a temporary directory (books_test_util.h).
#include <zlib.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/books_journal.h"
#include "tests/server/books_test_util.h"

namespace shmbroker::books_test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

class BooksLoadTest : public BooksDirTest {};

TEST_F(BooksLoadTest, NoFileIsEmptyBooks) {
  LoadReport report;
  Books books = Load(&report);
  EXPECT_EQ(Describe(books), Describe(Books()));
  EXPECT_EQ(report.version, 0u);
  EXPECT_THAT(report.problems, IsEmpty());
}

TEST_F(BooksLoadTest, ATornLastRecordIsIgnoredAtEveryCut) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  Books books = Sample();
  Report(books, *journal);
  const std::string whole = ReadFile(path());
  // The last record: a PutBuffer of a buffer held by lease 4.
  const size_t before_last = whole.size();
  BookedBuffer last = Buffer(7);
  last.info.name = "the-last-one";
  journal->PutBuffer(last, 50);
  journal.reset();
  const std::string with_last = ReadFile(path());
  ASSERT_GT(with_last.size(), before_last + 12);
  for (size_t cut = before_last + 1; cut < with_last.size(); ++cut) {
    SCOPED_TRACE(absl::StrCat("cut at ", cut));
    WriteFile(path(), with_last.substr(0, cut));
    LoadReport report;
    EXPECT_EQ(Describe(Load(&report)), Describe(books));
    EXPECT_EQ(report.torn_tail_bytes, cut - before_last);
    EXPECT_EQ(report.skipped, 0u);
    ASSERT_EQ(report.problems.size(), 1u);
    EXPECT_THAT(report.problems[0], HasSubstr("torn last record"));
  }
}

TEST_F(BooksLoadTest, AFlippedByteSkipsExactlyThatRecord) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  Books books = Sample();
  Report(books, *journal);
  const size_t before = journal->stats().bytes;
  journal->PutHolds(8, 3, 5);  // the record to corrupt
  journal->Flush();
  const size_t after = journal->stats().bytes;
  journal->PutHolds(4, 5, 2);  // a record after it, kept
  books.holds[{4, 5}] = 2;
  journal.reset();
  const std::string good = ReadFile(path());
  // Every byte of it: magic, length, crc and payload.
  for (size_t at = before; at < after; ++at) {
    SCOPED_TRACE(absl::StrCat("flipped byte ", at));
    std::string bad = good;
    bad[at] ^= 0x20;
    WriteFile(path(), bad);
    LoadReport report;
    EXPECT_EQ(Describe(Load(&report)), Describe(books));
    EXPECT_EQ(report.skipped, 1u);
    EXPECT_EQ(report.torn_tail_bytes, 0u);
    ASSERT_FALSE(report.problems.empty());
    EXPECT_THAT(report.problems[0],
                HasSubstr(absl::StrCat("record at offset ", before)));
  }
}

// A header of `version` with a right crc.
std::string HeaderOf(uint32_t version) {
  std::string header = "SHMBOOKS";
  for (int i = 0; i < 4; ++i) header += static_cast<char>(version >> (8 * i));
  const uint32_t crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(header.data()), 12));
  for (int i = 0; i < 4; ++i) header += static_cast<char>(crc >> (8 * i));
  return header;
}

TEST_F(BooksLoadTest, ABadHeaderDistrustsTheWholeFile) {
  auto journal = Open(Sample());
  ASSERT_NE(journal, nullptr);
  journal.reset();
  const std::string good = ReadFile(path());
  ASSERT_EQ(good.substr(0, 16), HeaderOf(1));
  const std::string records = good.substr(16);
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  std::string bad_crc = good;
  bad_crc[13] ^= 1;
  std::string bad_version = good;
  bad_version[8] = 2;  // crc left as it was
  struct Case {
    std::string file;
    const char* problem;
  };
  for (const Case& c : {
           Case{bad_magic, "magic"},
           Case{bad_crc, "crc32"},
           Case{bad_version, "crc32"},
           Case{HeaderOf(2) + records, "format version 2"},
           Case{HeaderOf(0) + records, "format version 0"},
           Case{good.substr(0, 10), "shorter than its header"},
           Case{"", "shorter than its header"},
       }) {
    SCOPED_TRACE(c.problem);
    WriteFile(path(), c.file);
    LoadReport report;
    EXPECT_EQ(Describe(Load(&report)), Describe(Books()));
    EXPECT_EQ(report.version, 0u);
    EXPECT_EQ(report.records, 0u);
    ASSERT_EQ(report.problems.size(), 1u);
    EXPECT_THAT(report.problems[0], HasSubstr("distrusted"));
    EXPECT_THAT(report.problems[0], HasSubstr(c.problem));
  }
}

TEST_F(BooksLoadTest, NothingInconsistentIsTrusted) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  Books books = Sample();
  Report(books, *journal);
  journal->PutHolds(77, 3, 1);         // no lease 77
  journal->PutHolds(4, 88, 1);         // no buffer 88
  journal->PutBuffer(Buffer(90), 60);  // nobody holds it
  journal->PutLease(Lease(91));        // a lease may hold nothing: kept
  books.leases[91] = Lease(91);
  // Held once, then its lease ended: the buffer goes with the hold.
  journal->PutLease(Lease(92));
  journal->PutBuffer(Buffer(93), 61);
  journal->PutHolds(92, 93, 1);
  journal->EraseLease(92);
  // Invalid entities: id 0, unknown enum values.
  journal->PutLease(Lease(0));
  journal->PutBuffer(Buffer(0), 62);
  journal->PutHolds(0, 3, 1);
  journal->PutHolds(4, 0, 1);
  journal->EraseBuffer(0, 63);
  journal->EraseLease(0);
  BookedBuffer no_shm_name = Buffer(94);
  no_shm_name.info.backing = Backing::kPosix;
  journal->PutBuffer(no_shm_name, 64);
  BookedBuffer pooled_nowhere = Buffer(95);
  pooled_nowhere.info.kind = BufferKind::kPooled;
  journal->PutBuffer(pooled_nowhere, 65);
  BookedBuffer bad_name = Buffer(96);
  bad_name.info.name = "-no";
  journal->PutBuffer(bad_name, 66);
  journal->Flush();
  // Ids seen are still raised, so none is handed out twice.
  books.last_handle = 93;
  books.last_lease = 92;
  books.revision = 61;
  LoadReport report;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  EXPECT_EQ(report.skipped, 9u);
  EXPECT_EQ(report.dropped, 3u + 2u);  // 3 holds, 2 buffers
  std::string problems = absl::StrJoin(report.problems, "\n");
  EXPECT_THAT(problems, HasSubstr("lease id 0"));
  EXPECT_THAT(problems, HasSubstr("buffer handle 0"));
  EXPECT_THAT(problems, HasSubstr("POSIX buffer 94 has no shm name"));
  EXPECT_THAT(problems, HasSubstr("pooled buffer 95 has no arena"));
  EXPECT_THAT(problems, HasSubstr("buffer 96: bad name"));
  EXPECT_THAT(problems, HasSubstr("holds of a lease or buffer not booked"));
  EXPECT_THAT(problems, HasSubstr("buffers nobody holds dropped"));
}

TEST_F(BooksLoadTest, ProblemsAreBounded) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  for (int i = 0; i < 100; ++i) journal->PutLease(Lease(0));
  journal->Flush();
  LoadReport report;
  Load(&report);
  EXPECT_EQ(report.skipped, 100u);
  ASSERT_EQ(report.problems.size(), LoadReport::kMaxProblems);
  EXPECT_THAT(report.problems.back(),
              HasSubstr(absl::StrCat(100 - (LoadReport::kMaxProblems - 1))));
}

// testdata/books_v1: a journal written by the first format's daemon (Sample
// reported, then changed). Every later daemon must read it as this test
// says. Regenerate only if the first format's writer was wrong, by running
// this test with SHMBROKER_WRITE_BOOKS_FIXTURE=tests/server/testdata/books_v1
// (build/tests/server/books_journal_test --gtest_filter='*Fixture*').
TEST_F(BooksLoadTest, ReadsTheVersion1Fixture) {
  if (const char* out = std::getenv("SHMBROKER_WRITE_BOOKS_FIXTURE")) {
    auto journal = Open();
    ASSERT_NE(journal, nullptr);
    Report(Sample(), *journal);
    journal->PutHolds(8, 6, 1);
    journal->PutBuffer(Buffer(7), 50);
    journal->PutHolds(4, 7, 1);
    journal->PutHolds(4, 7, 0);
    journal->EraseBuffer(7, 51);
    journal.reset();
    WriteFile(out, ReadFile(path()));
  }
  Books expected = Sample();
  expected.holds[{8, 6}] = 1;
  expected.last_handle = 7;
  expected.revision = 51;
  const std::string fixture = ReadFile(SHMBROKER_BOOKS_TESTDATA "/books_v1");
  ASSERT_FALSE(fixture.empty());
  LoadReport report;
  EXPECT_EQ(Describe(BooksJournal::LoadFromBytes(fixture, &report)),
            Describe(expected));
  EXPECT_EQ(report.version, 1u);
  EXPECT_EQ(report.records, 1u + 10u + 5u);  // Open wrote one
  EXPECT_THAT(report.problems, IsEmpty());
}

}  // namespace
}  // namespace shmbroker::books_test
