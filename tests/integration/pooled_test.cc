// Pooled buffers with the real daemon, real processes and real uids: every
// size class lands where another process finds it, one arena fd per
// connection, arenas never shared between uids, recycled memory zeroed, a
// killed client's pooled buffers reclaimed and its arena reused, and the
// kind rules (the pooling flags and the scavenger:
// pooling_config_test.cc). The uid tests need root (as CI has), and fail
// without it.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/size_classes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/proc_fds.h"
#include "tests/integration/pooled_options.h"
#include "tests/integration/test_daemon.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;

class PooledTest : public DaemonTest {
 protected:
  // 1GiB: arenas of the default 64MiB, pooling up to 16MiB.
  std::vector<std::string> DaemonFlags() override {
    return {"--capacity=1GiB", "--socket_group=" + std::to_string(kNobody)};
  }

  client::PoolStatus Pool() {
    auto status = client_->Status();
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? status->arenas : client::PoolStatus{};
  }
};

TEST_F(PooledTest, EverySizeClassIsFoundAtItsOffsetByAnotherProcess) {
  std::vector<uint64_t> sizes;
  for (const SizeClass& c : kSizeClasses) {
    sizes.push_back(c.size);
    sizes.push_back(c.size - 63);  // the smallest size of that class
  }
  // Page runs: just above the small sizes, odd lengths, and a big one.
  for (uint64_t size : {32769u, 40000u, 65536u, 1000001u, 4u << 20}) {
    sizes.push_back(size);
  }
  std::vector<client::Buffer> held;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto b = client_->Allocate(Pooled(sizes[i], "p" + std::to_string(i)));
    ASSERT_TRUE(b.ok()) << sizes[i] << ": " << b.status();
    ASSERT_EQ(b->kind(), client::Kind::kPooled);
    ASSERT_EQ(b->size(), sizes[i]);
    EXPECT_EQ(b->offset() % 64, 0u) << sizes[i];
    if (sizes[i] > kMaxSmallSize) EXPECT_EQ(b->offset() % 4096, 0u);
    ASSERT_TRUE(AllBytesAre(*b, 0)) << "new pooled memory must read zero";
    std::memset(b->data(), static_cast<int>(i + 1), b->size());
    held.push_back(std::move(*b));
  }
  // Nothing overlaps: sorted by offset, each ends before the next begins.
  std::vector<const client::Buffer*> by_offset;
  by_offset.reserve(held.size());
  for (const client::Buffer& b : held) by_offset.push_back(&b);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return std::pair(a->info().arena_id, a->offset()) <
           std::pair(b->info().arena_id, b->offset());
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const client::Buffer& prev = *by_offset[i - 1];
    if (prev.info().arena_id != by_offset[i]->info().arena_id) continue;
    EXPECT_LE(prev.offset() + prev.info().charged_bytes,
              by_offset[i]->offset());
  }
  // Another process maps each buffer by itself and reads exactly its bytes.
  for (size_t i = 0; i < sizes.size(); i += 7) {
    Finished cat = daemon_->Cli({"cat", "p" + std::to_string(i)});
    ASSERT_EQ(cat.exit_code, 0) << cat.err;
    EXPECT_EQ(cat.out, std::string(sizes[i], static_cast<char>(i + 1)))
        << "size " << sizes[i];
  }
}

TEST_F(PooledTest, AConnectionGetsEachArenaFdOnceAndTrimReturnsIt) {
  {
    auto warm = client_->Allocate(Pooled(1024));  // the arena's fd arrives
    ASSERT_TRUE(warm.ok()) << warm.status();
  }
  // Allocate went on the fd channel: the gRPC connection (one more fd) opens
  // lazily, so open it before counting.
  ASSERT_TRUE(client_->Ping().ok());
  const int before = CountFds(::getpid());
  std::vector<client::Buffer> held;
  for (int i = 0; i < 200; ++i) {
    auto b = client_->Allocate(Pooled(1024));
    ASSERT_TRUE(b.ok()) << b.status();
    held.push_back(std::move(*b));
  }
  EXPECT_EQ(CountFds(::getpid()), before)
      << "pooled buffers in a mapped arena need no fd";
  EXPECT_EQ(Pool().arenas, 1u);

  EXPECT_EQ(client_->TrimArenas(), 0u) << "buffers still point into it";
  held.clear();
  EXPECT_EQ(client_->TrimArenas(), 1u);
  EXPECT_EQ(CountFds(::getpid()), before - 1);
  // The daemon heard that the fd is gone and sends it again.
  auto again = client_->Allocate(Pooled(1024));
  ASSERT_TRUE(again.ok()) << again.status();
  std::memset(again->data(), 7, again->size());
  EXPECT_EQ(CountFds(::getpid()), before);
}

TEST_F(PooledTest, TwoUidsNeverShareAnArena) {
  ASSERT_TRUE(RunningAsRoot());
  ShareCliWithOtherUids(*daemon_);
  auto mine = client_->Allocate(Pooled(4096, "root-slot"));
  ASSERT_TRUE(mine.ok()) << mine.status();
  Subprocess theirs(CliArgsAs(*daemon_, kNobody,
                              {"alloc", "4KiB", "--kind=pooled",
                               "--name=nobody-slot", "--json", "--hold=60s"}),
                    "", CliEnvAs(*daemon_));
  std::optional<std::string> line =
      theirs.WaitForOutput("nobody-slot", absl::Seconds(10));
  ASSERT_TRUE(line.has_value()) << theirs.Wait().err;
  const nlohmann::json buffer = nlohmann::json::parse(*line);
  EXPECT_EQ(buffer["kind"], "pooled");
  EXPECT_EQ(buffer["owner_uid"], kNobody);
  EXPECT_NE(buffer["arena"], mine->info().arena_id);

  const client::PoolStatus pool = Pool();
  EXPECT_EQ(pool.arenas, 2u);
  ASSERT_EQ(pool.tenants.size(), 2u);
  for (const client::PoolStatus::Tenant& t : pool.tenants) {
    EXPECT_EQ(t.arenas, 1u) << "uid " << t.uid;
  }
  // nobody cannot attach root's buffer, so never gets root's arena fd.
  Finished denied = RunCliAs(*daemon_, kNobody, {"cat", "root-slot"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("permission denied"));
}

TEST_F(PooledTest, RecycledMemoryNeverShowsAnotherTenantsData) {
  ASSERT_TRUE(RunningAsRoot());
  ShareCliWithOtherUids(*daemon_);
  // nobody fills pooled buffers with its secret and exits (releasing them).
  for (int i = 0; i < 4; ++i) {
    Finished put = RunCliAs(
        *daemon_, kNobody,
        {"put", "secret" + std::to_string(i), "--kind=pooled", "--hold=0s"},
        std::string(4096, 'S'));
    ASSERT_EQ(put.exit_code, 0) << put.err;
  }
  // Every pooled buffer root gets reads zero.
  std::vector<client::Buffer> held;
  for (int i = 0; i < 64; ++i) {
    auto b = client_->Allocate(Pooled(4096));
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(AllBytesAre(*b, 0)) << "buffer " << i;
    held.push_back(std::move(*b));
  }
}

TEST_F(PooledTest, RecycledSlotIsZeroedUnlessUninitializedIsAsked) {
  uint64_t offset = 0;
  {
    auto b = client_->Allocate(Pooled(4096));
    ASSERT_TRUE(b.ok()) << b.status();
    offset = b->offset();
    std::memset(b->data(), 'X', b->size());
  }
  auto zeroed = client_->Allocate(Pooled(4096));
  ASSERT_TRUE(zeroed.ok()) << zeroed.status();
  ASSERT_EQ(zeroed->offset(), offset) << "the freed slot is reused first";
  EXPECT_TRUE(AllBytesAre(*zeroed, 0));
  std::memset(zeroed->data(), 'Y', zeroed->size());
  ASSERT_TRUE(zeroed->Release().ok());

  client::AllocateOptions raw = Pooled(4096);
  raw.uninitialized = true;
  auto dirty = client_->Allocate(raw);
  ASSERT_TRUE(dirty.ok()) << dirty.status();
  ASSERT_EQ(dirty->offset(), offset);
  EXPECT_TRUE(AllBytesAre(*dirty, 'Y')) << "this uid's own former data";
}

TEST_F(PooledTest, KilledClientsPooledBuffersAreReclaimedAndTheArenaReused) {
  Subprocess worker(
      {LEASE_WORKER_PATH, daemon_->socket(), "hold-pooled", "50"});
  ASSERT_TRUE(worker.WaitForOutput("ready", absl::Seconds(10)))
      << worker.Wait().err;
  client::PoolStatus pool = Pool();
  ASSERT_EQ(pool.live_buffers, 50u);
  ASSERT_EQ(pool.arenas, 1u);
  const uint64_t arena_bytes = pool.arena_bytes;
  auto list = client_->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 50u);
  const uint64_t arena = list->front().arena_id;

  worker.Signal(SIGKILL);
  ASSERT_TRUE(
      WaitForStatus(*client_, "the killed client's pooled buffers reclaimed",
                    [](const client::DaemonStatus& s) {
                      return s.buffers == 0 && s.arenas.live_buffers == 0 &&
                             s.allocated_bytes == 0;
                    }));
  pool = Pool();
  EXPECT_EQ(pool.in_use_bytes, 0u);
  EXPECT_EQ(pool.arenas, 1u) << "kept for reuse until the scavenge delay";
  EXPECT_EQ(pool.arena_bytes, arena_bytes);
  auto reused = client_->Allocate(Pooled(64 << 10));
  ASSERT_TRUE(reused.ok()) << reused.status();
  EXPECT_EQ(reused->info().arena_id, arena);
  EXPECT_TRUE(AllBytesAre(*reused, 0)) << "the dead client's 0xee is gone";
}

TEST_F(PooledTest, ALargePooledBufferGetsItsOwnArenaReusedWarmByItsUid) {
  // --capacity=1GiB: shared arenas pool up to 16 MiB, large ones up to
  // 256 MiB, and only when asked for.
  constexpr uint64_t kBatch = 40 << 20;
  client::AllocateOptions by_default = Pooled(kBatch);
  by_default.kind = client::Kind::kDefault;
  auto dedicated = client_->Allocate(by_default);
  ASSERT_TRUE(dedicated.ok()) << dedicated.status();
  EXPECT_EQ(dedicated->kind(), client::Kind::kDedicated);
  ASSERT_TRUE(dedicated->Release().ok());

  auto first = client_->Allocate(Pooled(kBatch));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->kind(), client::Kind::kPooled);
  EXPECT_EQ(first->offset(), 0u);
  const uint64_t arena = first->info().arena_id;
  std::memset(first->data(), 'L', first->size());
  client::PoolStatus pool = Pool();
  EXPECT_EQ(pool.pooled_large_max_size, uint64_t{256} << 20);
  EXPECT_EQ(pool.large_arenas, 1u);
  EXPECT_EQ(pool.arena_bytes, kBatch) << "an arena sized to the buffer";
  const uint8_t* const mapped = first->data();
  first = absl::InternalError("released");  // the Buffer goes: released

  // The next batch of the same size: the same arena and, in this process,
  // the same mapping; uninitialized, the uid's own bytes are still there.
  client::AllocateOptions raw = Pooled(kBatch);
  raw.uninitialized = true;
  auto second = client_->Allocate(raw);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->info().arena_id, arena);
  EXPECT_EQ(second->data(), mapped);
  EXPECT_TRUE(AllBytesAre(*second, 'L'));
  pool = Pool();
  EXPECT_EQ(pool.arenas_created_total, 1u);
  EXPECT_EQ(pool.zeroed_bytes_total, 0u);
  second = absl::InternalError("released");
  // Zeroed (the default), it reads zero.
  auto third = client_->Allocate(Pooled(kBatch));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->info().arena_id, arena);
  EXPECT_TRUE(AllBytesAre(*third, 0));
}

TEST(PooledArenaFdTest, AGrantWhoseArenaFdNeverArrivedIsRecovered) {
  // The daemon sends an arena's fd once per connection. When that first
  // grant fails in the client (here: no address space to map the arena),
  // the next grant in the arena carries no fd; the library must fetch it
  // again rather than fail for good.
  // 1 GiB arenas, so that the worker can leave hundreds of MiB of headroom
  // for the call and still be too tight for the arena.
  TestDaemon daemon({"--capacity=16GiB", "--arena_size=1GiB"});
  ASSERT_TRUE(daemon.started()) << daemon.startup_output();
  auto client = daemon.Connect();
  ASSERT_TRUE(client.ok()) << client.status();
  Finished run =
      RunToEnd({LEASE_WORKER_PATH, daemon.socket(), "arena-fd-lost"});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("first: "));
  EXPECT_THAT(run.out, HasSubstr("recovered"));
  // The worker's exit reaches the daemon asynchronously.
  EXPECT_TRUE(WaitForStatus(**client, "every hold of the worker dropped",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 0 && s.holds == 0;
                            }));
}

TEST_F(PooledTest, KindRulesAndClearErrors) {
  client::AllocateOptions shared = Pooled(4096);
  shared.share = {{client::ShareRule::Scope::kAll, 0, false}};
  auto refused = client_->Allocate(shared);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("owner-only memfd"));

  client::AllocateOptions posix = Pooled(4096);
  posix.backing = client::Backing::kPosix;
  EXPECT_EQ(client_->Allocate(posix).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Above --pooled_max_size a pooled buffer gets an arena of its own (the
  // next test); above --pooled_large_max_size it cannot be pooled.
  auto too_big = client_->Allocate(Pooled((uint64_t{256} << 20) + 1));
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("--pooled_large_max_size"));

  // The daemon's choice: small owner-only memfd is pooled; shared, posix
  // and big ones are dedicated; dedicated can be asked for.
  shared.kind = client::Kind::kDefault;
  client::AllocateOptions small = Pooled(100);
  small.kind = client::Kind::kDefault;
  client::AllocateOptions big = Pooled((16 << 20) + 1);
  big.kind = client::Kind::kDefault;
  client::AllocateOptions dedicated = Pooled(100);
  dedicated.kind = client::Kind::kDedicated;
  const std::pair<client::AllocateOptions, client::Kind> cases[] = {
      {small, client::Kind::kPooled},
      {shared, client::Kind::kDedicated},
      {big, client::Kind::kDedicated},
      {dedicated, client::Kind::kDedicated}};
  for (const auto& [options, kind] : cases) {
    auto b = client_->Allocate(options);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->kind(), kind) << options.size;
  }
}

}  // namespace
}  // namespace shmbroker::testing
