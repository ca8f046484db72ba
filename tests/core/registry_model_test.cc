// Registry against a simple model (a seeded random walk), and under
// concurrent use (meant to run under TSan too).
#include <iterator>
#include <latch>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"
#include "tests/core/test_support.h"

namespace shmbroker {
namespace {

using ::shmbroker::testing::IsOk;
using ::shmbroker::testing::kAllReadWrite;
using ::shmbroker::testing::kRootId;
using ::shmbroker::testing::PageSize;
using ::shmbroker::testing::StatusIs;
using ::testing::_;

using Code = absl::StatusCode;

class RegistryModelTest : public ::shmbroker::testing::RegistryTestBase {};

// What the registry should hold, tracked independently of it.
struct Model {
  struct Buffer {
    uint64_t charged = 0;
    uid_t owner = 0;
    bool shared = false;
    std::string name;
    uint32_t holders = 0;
  };
  std::map<Handle, Buffer> buffers;
  std::vector<std::map<Handle, uint32_t>> holds;  // per client slot
  std::set<std::string> names;
  uint64_t allocated = 0;
  uint64_t total_holds = 0;

  // Drops `count` holds of `slot`; returns the holders left.
  uint32_t Drop(size_t slot, Handle h, uint32_t count) {
    if ((holds[slot][h] -= count) == 0) holds[slot].erase(h);
    total_holds -= count;
    Buffer& b = buffers.at(h);
    b.holders -= count;
    const uint32_t left = b.holders;
    if (left == 0) {
      allocated -= b.charged;
      names.erase(b.name);
      buffers.erase(h);
    }
    return left;
  }
};

TEST_F(RegistryModelTest, RandomOperationsMatchTheModel) {
  constexpr uint64_t kCapacityPages = 24;
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = Pages(kCapacityPages);
  Reset(options);
  // Two uids with two connections each, so sharing and ownership both matter.
  const std::vector<Identity> identities = {
      {.pid = 1, .uid = 1000, .gid = 1000},
      {.pid = 2, .uid = 1000, .gid = 1000},
      {.pid = 3, .uid = 2000, .gid = 2000},
      {.pid = 4, .uid = 2000, .gid = 2000}};
  std::vector<ConnectionId> clients;
  for (const Identity& id : identities) clients.push_back(Open(id));
  Model model;
  model.holds.resize(clients.size());
  std::vector<Handle> ever;  // includes reclaimed handles, to probe stale ones
  const std::vector<uint64_t> sizes = {
      1, 100, Pages(1), Pages(1) + 1, Pages(3), Pages(5)};
  std::mt19937 rng(20240607);
  auto pick = [&rng](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };
  int ok_allocs = 0, denied = 0, exhausted = 0, reclaimed_by_close = 0;

  for (int step = 0; step < 3000; ++step) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    const size_t slot = pick(clients.size());
    const ConnectionId client = clients[slot];
    const int op = static_cast<int>(pick(100));
    if (op < 30) {  // allocate
      const uint64_t size = sizes[pick(sizes.size())];
      const uint64_t charged =
          (size + PageSize() - 1) / PageSize() * PageSize();
      const std::string name = pick(3) == 0 ? absl::StrCat("n", pick(5)) : "";
      const bool shared = pick(2) == 0;
      absl::StatusOr<Grant> grant = registry_->Allocate(
          client,
          Spec(size, name,
               shared ? std::vector{kAllReadWrite} : std::vector<ShareRule>{}));
      if (!name.empty() && model.names.contains(name)) {
        ASSERT_THAT(grant, StatusIs(Code::kAlreadyExists, _));
      } else if (model.allocated + charged > options.capacity_bytes) {
        ASSERT_THAT(grant, StatusIs(Code::kResourceExhausted, _));
        ++exhausted;
      } else {
        ASSERT_THAT(grant, IsOk());
        const Handle h = grant->buffer.handle;
        ASSERT_FALSE(model.buffers.contains(h));
        model.buffers[h] = {charged, identities[slot].uid, shared, name, 1};
        ++model.holds[slot][h];
        ++model.total_holds;
        model.allocated += charged;
        if (!name.empty()) model.names.insert(name);
        ever.push_back(h);
        ++ok_allocs;
      }
    } else if (op < 60 && !ever.empty()) {  // attach, by handle or name
      const Handle h = ever[pick(ever.size())];
      auto it = model.buffers.find(h);
      const bool by_name =
          it != model.buffers.end() && !it->second.name.empty() && pick(2) == 0;
      absl::StatusOr<Grant> grant = registry_->Attach(
          client,
          by_name ? BufferRef::ByName(it->second.name) : BufferRef::ByHandle(h),
          AccessRequest::kBestAllowed);
      if (it == model.buffers.end()) {
        ASSERT_THAT(grant, StatusIs(Code::kNotFound, _));
      } else if (it->second.owner != identities[slot].uid &&
                 !it->second.shared) {
        ASSERT_THAT(grant, StatusIs(Code::kPermissionDenied, _));
        ++denied;
      } else {
        ASSERT_THAT(grant, IsOk());
        ASSERT_EQ(grant->buffer.holders, ++it->second.holders);
        ++model.holds[slot][h];
        ++model.total_holds;
      }
    } else if (op < 92 && !ever.empty()) {  // release
      const Handle h = ever[pick(ever.size())];
      absl::StatusOr<uint32_t> left = registry_->Release(client, h);
      if (model.holds[slot].contains(h)) {
        ASSERT_THAT(left, IsOk());
        ASSERT_EQ(*left, model.Drop(slot, h, 1));
      } else if (model.buffers.contains(h)) {
        ASSERT_THAT(left, StatusIs(Code::kPermissionDenied, _));
      } else {
        ASSERT_THAT(left, StatusIs(Code::kNotFound, _));
      }
    } else {  // the connection goes away and a new one replaces it
      CloseResult expected;
      const std::map<Handle, uint32_t> held = model.holds[slot];
      for (const auto& [h, count] : held) {
        const uint64_t charged = model.buffers.at(h).charged;
        expected.holds_dropped += count;
        if (model.Drop(slot, h, count) == 0) {
          ++expected.buffers_reclaimed;
          expected.bytes_reclaimed += charged;
        }
      }
      CloseResult closed = registry_->CloseConnection(client);
      ASSERT_EQ(closed.holds_dropped, expected.holds_dropped);
      ASSERT_EQ(closed.buffers_reclaimed, expected.buffers_reclaimed);
      ASSERT_EQ(closed.bytes_reclaimed, expected.bytes_reclaimed);
      reclaimed_by_close += static_cast<int>(closed.buffers_reclaimed);
      clients[slot] = Open(identities[slot]);
    }

    const RegistryStats stats = registry_->Stats();
    ASSERT_EQ(stats.buffers, model.buffers.size());
    ASSERT_EQ(stats.allocated_bytes, model.allocated);
    ASSERT_EQ(stats.holds, model.total_holds);
    ASSERT_EQ(stats.clients, clients.size());
    if (step % 100 == 0) {
      bool more = false;
      std::vector<BufferInfo> listed =
          registry_->List(kRootId, 0, 100000, &more);
      ASSERT_EQ(listed.size(), model.buffers.size());
      for (const BufferInfo& info : listed) {
        ASSERT_TRUE(model.buffers.contains(info.handle));
        ASSERT_EQ(info.holders, model.buffers[info.handle].holders);
        ASSERT_EQ(info.charged_bytes, model.buffers[info.handle].charged);
      }
    }
  }
  // The walk must have reached the interesting states, or it proves little.
  EXPECT_GT(ok_allocs, 100);
  EXPECT_GT(denied, 10);
  EXPECT_GT(exhausted, 10);
  EXPECT_GT(reclaimed_by_close, 10);

  for (ConnectionId client : clients) registry_->CloseConnection(client);
  const RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.buffers, 0u);
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.holds, 0u);
  EXPECT_EQ(stats.clients, 0u);
}

TEST_F(RegistryModelTest, ConcurrentUseKeepsTotalsConsistent) {
  constexpr int kThreads = 4;
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = Pages(32);
  Reset(options);
  ConnectionId hub_owner = Open(::shmbroker::testing::kAlice);
  const Handle hub = Alloc(hub_owner, 1, "hub", {kAllReadWrite});
  ASSERT_NE(hub, 0u);

  std::latch start(kThreads);
  std::vector<std::thread> threads;
  std::vector<int> successes(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Identity me{.pid = 500 + t, .uid = uid_t(3000 + t), .gid = 3000};
      std::mt19937 rng(7 + t);
      std::multiset<Handle> held;  // this thread's holds
      absl::StatusOr<ConnectionId> client = registry_->OpenConnection(me);
      ASSERT_THAT(client, IsOk());
      start.arrive_and_wait();
      for (int i = 0; i < 400; ++i) {
        const int op = std::uniform_int_distribution<int>(0, 99)(rng);
        if (op < 30) {
          absl::StatusOr<Grant> grant = registry_->Allocate(
              *client, Spec(1 + rng() % (3 * PageSize()), "", {kAllReadWrite}));
          if (grant.ok()) held.insert(grant->buffer.handle);
          // Other threads may have used the capacity up.
          EXPECT_TRUE(grant.ok() || absl::IsResourceExhausted(grant.status()));
        } else if (op < 55) {
          // Any handle: another thread's buffer may be reclaimed meanwhile.
          const Handle h = op < 40 ? hub : 1 + rng() % (hub + 8 * (i + 1));
          absl::StatusOr<Grant> grant = registry_->Attach(
              *client, BufferRef::ByHandle(h), AccessRequest::kBestAllowed);
          if (grant.ok()) held.insert(h);
          EXPECT_TRUE(grant.ok() || absl::IsNotFound(grant.status()));
        } else if (op < 95 && !held.empty()) {
          auto it = held.begin();
          std::advance(it, rng() % held.size());
          EXPECT_THAT(registry_->Release(*client, *it), IsOk());
          held.erase(it);
        } else {
          CloseResult closed = registry_->CloseConnection(*client);
          EXPECT_EQ(closed.holds_dropped, held.size());
          held.clear();
          client = registry_->OpenConnection(me);
          ASSERT_THAT(client, IsOk());
        }
        ++successes[t];
      }
      EXPECT_EQ(registry_->CloseConnection(*client).holds_dropped, held.size());
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(successes[t], 400);
  const RegistryStats stats = registry_->Stats();
  EXPECT_EQ(stats.buffers, 1u);  // only the hub survives
  EXPECT_EQ(stats.holds, 1u);
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.allocated_bytes, Pages(1));
  EXPECT_EQ(Holders(hub), 1);
}

TEST_F(RegistryModelTest, ConcurrentAllocationsOfOneNameHaveOneWinner) {
  constexpr int kThreads = 6;
  std::vector<ConnectionId> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.push_back(
        Open({.pid = 600 + t, .uid = uid_t(4000 + t), .gid = 4000}));
  }
  for (int round = 0; round < 20; ++round) {
    std::latch start(kThreads);
    std::vector<absl::Status> results(kThreads);
    std::vector<Handle> handles(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        absl::StatusOr<Grant> grant = AllocSpec(clients[t], 1, "contended");
        results[t] = grant.status();
        if (grant.ok()) handles[t] = grant->buffer.handle;
      });
    }
    for (std::thread& thread : threads) thread.join();
    int winners = 0;
    for (int t = 0; t < kThreads; ++t) {
      if (results[t].ok()) {
        ++winners;
        ASSERT_THAT(registry_->Release(clients[t], handles[t]), IsOk());
      } else {
        EXPECT_THAT(results[t], StatusIs(Code::kAlreadyExists, _));
      }
    }
    ASSERT_EQ(winners, 1) << "round " << round;
    ASSERT_EQ(registry_->Stats().buffers, 0u);
  }
}

TEST_F(RegistryModelTest, ConcurrentAllocationsNeverOvercommitCapacity) {
  constexpr int kThreads = 4;
  RegistryOptions options = DefaultOptions();
  options.capacity_bytes = Pages(16);
  Reset(options);
  std::latch start(kThreads);
  std::vector<int> granted(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ConnectionId client =
          Open({.pid = 700 + t, .uid = uid_t(5000 + t), .gid = 5000});
      start.arrive_and_wait();
      for (int i = 0; i < 10; ++i) {
        if (AllocSpec(client, PageSize()).ok()) ++granted[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  int total = 0;
  for (int g : granted) total += g;
  EXPECT_EQ(total, 16);
  EXPECT_EQ(registry_->Stats().allocated_bytes, Pages(16));
}

}  // namespace
}  // namespace shmbroker
