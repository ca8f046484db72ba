// What the books journal's tests share (books_journal_test.cc,
// books_load_test.cc): a temporary state directory, sample books with every
// kind of entity, and a description of books that shows which entity
// differs.
#ifndef SHMBROKER_TESTS_SERVER_BOOKS_TEST_UTIL_H_
#define SHMBROKER_TESTS_SERVER_BOOKS_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "server/books_journal.h"

namespace shmbroker::books_test {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// Everything Books holds, one line per entity, so that a mismatch shows
// which one differs.
inline std::string Describe(const Books& books) {
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

inline BookedBuffer Buffer(Handle handle) {
  BookedBuffer b;
  b.info.handle = handle;
  b.info.size = 1000 + handle;
  b.info.charged_bytes = 4096;
  b.info.owner = {.pid = 100, .uid = 1000, .gid = 1000};
  b.memory = {.device = 7, .inode = 9000 + handle};
  return b;
}

inline BookedLease Lease(LeaseId id, bool detached = false) {
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
inline Books Sample() {
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

// Appends `books` to `journal` as a Registry would have reported it, in one
// hold of its lock.
inline void Report(const Books& books, BookSink& sink) {
  for (const auto& [id, lease] : books.leases) sink.PutLease(lease);
  for (const auto& [handle, buffer] : books.buffers) {
    sink.PutBuffer(buffer, books.revision);
  }
  for (const auto& [key, count] : books.holds) {
    sink.PutHolds(key.first, key.second, count);
  }
  sink.PutLastArena(books.last_arena);
  sink.Flush();
}

class BooksDirTest : public ::testing::Test {
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

}  // namespace shmbroker::books_test

#endif  // SHMBROKER_TESTS_SERVER_BOOKS_TEST_UTIL_H_
