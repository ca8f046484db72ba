// HoldTable: what the library would present to a restarted daemon.
#include "client/src/hold_table.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/proc_fds.h"

namespace shmbroker::client {
namespace {

using ::shmbroker::testing::InodeOf;

TEST(HoldTableTest, SnapshotsLiveHoldsWithTheirOwnFdOfTheSameMemory) {
  UniqueFd a(::memfd_create("a", MFD_CLOEXEC));
  UniqueFd b(::memfd_create("b", MFD_CLOEXEC));
  HoldTable table;
  const uint64_t first = table.Register(11, 7, a.get());
  const uint64_t second = table.Register(12, 8, b.get());
  table.Register(13, 7, a.get());  // a second buffer in one arena
  EXPECT_NE(first, second);
  table.Unregister(second);
  table.Unregister(0);  // no registration: nothing happens
  EXPECT_EQ(table.size(), 2u);

  std::vector<HoldTable::Hold> holds =
      table.Snapshot([](uint64_t) { return true; });
  ASSERT_EQ(holds.size(), 2u);
  EXPECT_EQ(holds[0].handle, 11u);
  EXPECT_EQ(holds[1].handle, 13u);
  for (const HoldTable::Hold& hold : holds) {
    EXPECT_EQ(hold.lease, 7u);
    EXPECT_NE(hold.fd.get(), a.get());  // a duplicate, ours to close
    EXPECT_EQ(InodeOf(hold.fd.get()), InodeOf(a.get()));
  }
  // The Buffer may close its fd now: the snapshot's fds stay good.
  a.reset();
  EXPECT_GT(InodeOf(holds[0].fd.get()), 0u);
}

TEST(HoldTableTest, SnapshotLeavesOutHoldsUnderLeasesNoLongerKept) {
  UniqueFd fd(::memfd_create("m", MFD_CLOEXEC));
  HoldTable table;
  table.Register(1, 100, fd.get());
  table.Register(2, 200, fd.get());
  std::vector<HoldTable::Hold> holds =
      table.Snapshot([](uint64_t lease) { return lease == 200; });
  ASSERT_EQ(holds.size(), 1u);
  EXPECT_EQ(holds[0].handle, 2u);
}

TEST(HoldTableTest, BuffersOnManyThreadsRegisterAndUnregisterConcurrently) {
  UniqueFd fd(::memfd_create("m", MFD_CLOEXEC));
  const ino_t memory = InodeOf(fd.get());
  HoldTable table;
  std::atomic<int> running{4};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        const uint64_t id = table.Register(t * 1000 + i, t, fd.get());
        if (i % 2 == 0) table.Unregister(id);
      }
      running.fetch_sub(1);
    });
  }
  // A resume may snapshot meanwhile: every hold it takes is whole, with
  // its own fd of the memory.
  int snapshots = 0;
  while (running.load() > 0 || snapshots < 20) {
    for (const HoldTable::Hold& hold :
         table.Snapshot([](uint64_t) { return true; })) {
      ASSERT_EQ(InodeOf(hold.fd.get()), memory);
      ASSERT_LT(hold.handle, 4000u);
      ASSERT_EQ(hold.lease, hold.handle / 1000);
    }
    ++snapshots;
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(table.size(), 2000u);
}

}  // namespace
}  // namespace shmbroker::client
