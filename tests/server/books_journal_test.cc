// BooksJournal (server/books_journal.h): what it writes is what Load reads,
// through appends, rewrites, torn tails, corrupt records and bad headers,
// and Load trusts nothing inconsistent. Real files in a temporary directory.
#include "server/books_journal.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shmbroker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// Everything Books holds, one line per entity, so that a mismatch shows
// which one differs.
std::string Describe(const Books& books) {
  std::vector<std::string> lines;
  for (const auto& [handle, b] : books.buffers) {
    const BufferInfo& i = b.info;
    std::string share;
    for (const ShareRule& r : i.share) {
      absl::StrAppend(&share, static_cast<int>(r.scope), ":", r.id, ":",
                      static_cast<int>(r.mode), ",");
    }
    lines.push_back(absl::StrCat(
        "buffer ", handle, " handle=", i.handle, " name=", i.name,
        " size=", i.size, " charged=", i.charged_bytes, " backing=",
        static_cast<int>(i.backing), " kind=", static_cast<int>(i.kind),
        " arena=", i.arena_id, " offset=", i.offset, " owner=", i.owner.pid,
        "/", i.owner.uid, "/", i.owner.gid, " share=", share,
        " shm=", i.shm_name, " sealed=", i.sealed, " memory=", b.memory.device,
        ":", b.memory.inode));
  }
  for (const auto& [id, l] : books.leases) {
    lines.push_back(absl::StrCat(
        "lease ", id, " id=", l.id, " owner=", l.owner.pid, "/", l.owner.uid,
        "/", l.owner.gid, " detached=", l.detached,
        " default=", l.connection_default, " ttl=", absl::FormatDuration(l.ttl),
        " deadline=", absl::ToUnixNanos(l.deadline)));
  }
  for (const auto& [key, count] : books.holds) {
    lines.push_back(
        absl::StrCat("holds ", key.first, "/", key.second, " = ", count));
  }
  lines.push_back(absl::StrCat(
      "last_handle=", books.last_handle, " last_lease=", books.last_lease,
      " last_arena=", books.last_arena, " revision=", books.revision));
  return absl::StrJoin(lines, "\n");
}

BookedBuffer Buffer(Handle handle) {
  BookedBuffer b;
  b.info.handle = handle;
  b.info.size = 1000 + handle;
  b.info.charged_bytes = 4096;
  b.info.owner = {.pid = 100, .uid = 1000, .gid = 1000};
  b.memory = {.device = 7, .inode = 9000 + handle};
  return b;
}

BookedLease Lease(LeaseId id, bool detached = false) {
  BookedLease l;
  l.id = id;
  l.owner = {.pid = 100, .uid = 1000, .gid = 1000};
  l.detached = detached;
  l.connection_default = !detached;
  l.ttl = absl::Seconds(10);
  l.deadline = absl::FromUnixNanos(1700000000123456789 + int64_t(id));
  return l;
}

// Books with every kind of entity and every field set somewhere: a pooled
// named buffer, a sealed POSIX buffer shared two ways, a dedicated memfd
// held under two leases, a detached lease. Also the version-1 fixture's
// content (testdata/books_v1): never change it, add a new fixture instead.
Books Sample() {
  Books books;
  BookedBuffer pooled = Buffer(3);
  pooled.info.name = "frames.0";
  pooled.info.kind = BufferKind::kPooled;
  pooled.info.arena_id = 2;
  pooled.info.offset = 65536;
  pooled.info.charged_bytes = 1024;
  BookedBuffer posix = Buffer(5);
  posix.info.backing = Backing::kPosix;
  posix.info.shm_name = "/shmbroker.5.0123456789abcdef";
  posix.info.sealed = true;
  posix.info.owner = {.pid = 200, .uid = 2000, .gid = 2001};
  posix.info.share = {{.scope = ShareRule::Scope::kUid,
                       .id = 3000,
                       .mode = AccessMode::kReadOnly},
                      {.scope = ShareRule::Scope::kGid,
                       .id = 4000,
                       .mode = AccessMode::kReadWrite},
                      {.scope = ShareRule::Scope::kAll,
                       .id = 0,
                       .mode = AccessMode::kReadOnly}};
  BookedBuffer dedicated = Buffer(6);
  books.buffers = {{3, pooled}, {5, posix}, {6, dedicated}};
  BookedLease detached = Lease(8, /*detached=*/true);
  detached.owner = {.pid = 200, .uid = 2000, .gid = 2001};
  detached.ttl = absl::Milliseconds(1500);
  books.leases = {{4, Lease(4)}, {8, detached}};
  books.holds = {{{4, 3}, 1}, {{4, 6}, 2}, {{8, 5}, 1}, {{8, 6}, 3}};
  books.last_handle = 6;
  books.last_lease = 8;
  books.last_arena = 2;
  books.revision = 42;
  return books;
}

// Appends `books` to `journal` as a Registry would have reported it.
void Report(const Books& books, BookSink& sink) {
  for (const auto& [id, lease] : books.leases) sink.PutLease(lease);
  for (const auto& [handle, buffer] : books.buffers) {
    sink.PutBuffer(buffer, books.revision);
  }
  for (const auto& [key, count] : books.holds) {
    sink.PutHolds(key.first, key.second, count);
  }
  sink.PutLastArena(books.last_arena);
}

class BooksJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/books_journal_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    dir_ = root_ + "/state";
  }
  void TearDown() override {
    std::string command = "rm -rf '" + root_ + "'";
    ASSERT_EQ(std::system(command.c_str()), 0);
  }

  std::unique_ptr<BooksJournal> Open(const Books& initial = Books()) {
    auto journal = BooksJournal::Open(dir_, initial);
    EXPECT_TRUE(journal.ok()) << journal.status();
    return journal.ok() ? std::move(*journal) : nullptr;
  }

  Books Load(LoadReport* report) {
    absl::StatusOr<Books> books = BooksJournal::Load(dir_, report);
    EXPECT_TRUE(books.ok()) << books.status();
    return books.ok() ? *std::move(books) : Books();
  }

  std::string path() const { return dir_ + "/books"; }

  std::string root_;
  std::string dir_;
};

TEST_F(BooksJournalTest, NoFileIsEmptyBooks) {
  LoadReport report;
  Books books = Load(&report);
  EXPECT_EQ(Describe(books), Describe(Books()));
  EXPECT_EQ(report.version, 0u);
  EXPECT_THAT(report.problems, IsEmpty());
}

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

  LoadReport report;
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
  books.holds[{8, 3}] = 2;
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  // And a new daemon's Open compacts what it loaded.
  journal.reset();
  journal = Open(books);
  ASSERT_NE(journal, nullptr);
  EXPECT_EQ(Describe(Load(&report)), Describe(books));
  EXPECT_FALSE(journal->WantsRewrite());
}

TEST_F(BooksJournalTest, ATornLastRecordIsIgnoredAtEveryCut) {
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

TEST_F(BooksJournalTest, AFlippedByteSkipsExactlyThatRecord) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  Books books = Sample();
  Report(books, *journal);
  const size_t before = journal->stats().bytes;
  journal->PutHolds(8, 3, 5);  // the record to corrupt
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

TEST_F(BooksJournalTest, ABadHeaderDistrustsTheWholeFile) {
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

TEST_F(BooksJournalTest, NothingInconsistentIsTrusted) {
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

TEST_F(BooksJournalTest, ProblemsAreBounded) {
  auto journal = Open();
  ASSERT_NE(journal, nullptr);
  for (int i = 0; i < 100; ++i) journal->PutLease(Lease(0));
  LoadReport report;
  Load(&report);
  EXPECT_EQ(report.skipped, 100u);
  ASSERT_EQ(report.problems.size(), LoadReport::kMaxProblems);
  EXPECT_THAT(report.problems.back(),
              HasSubstr(absl::StrCat(100 - (LoadReport::kMaxProblems - 1))));
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

// testdata/books_v1: a journal written by the first format's daemon (Sample
// reported, then changed). Every later daemon must read it as this test
// says. Regenerate only if the first format's writer was wrong, by running
// this test with SHMBROKER_WRITE_BOOKS_FIXTURE=tests/server/testdata/books_v1
// (build/tests/server/books_journal_test --gtest_filter='*Fixture*').
TEST_F(BooksJournalTest, ReadsTheVersion1Fixture) {
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
}  // namespace shmbroker
