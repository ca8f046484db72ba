// The Registry's Watch: revisions, the change log and its history, the
// watchers' queues and what each watcher may see.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/registry_fixture.h"

namespace shmbroker::testing {
namespace {

using Code = absl::StatusCode;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A watcher and what woke it.
struct Watching {
  WatchHub::Watch watch;
  int wakes = 0;

  // Every event queued, in order, as "TYPE NAME@REVISION".
  std::vector<std::string> Drain() {
    std::vector<std::string> out;
    while (std::optional<WatchEvent> e = watch.queue->Pop()) {
      out.push_back(absl::StrCat(WatchEventTypeName(e->type), " ",
                                 e->buffer.name, "@", e->revision));
    }
    return out;
  }
};

class RegistryWatchTest : public RegistryTestBase {
 protected:
  absl::StatusOr<WatchHub::Watch> Watch(const Identity& who,
                                        const std::string& prefix,
                                        uint64_t after, Watching* w,
                                        const std::string& scope = "c1") {
    return registry_->Watch({who, prefix, after, scope}, [w] { ++w->wakes; });
  }
  std::unique_ptr<Watching> MustWatch(const Identity& who,
                                      const std::string& prefix = "",
                                      uint64_t after = 0) {
    auto w = std::make_unique<Watching>();
    absl::StatusOr<WatchHub::Watch> watch = Watch(who, prefix, after, w.get());
    EXPECT_THAT(watch, IsOk());
    if (watch.ok()) w->watch = *watch;
    return w;
  }
  uint64_t Revision() { return registry_->Stats().revision; }
};

TEST_F(RegistryWatchTest, EveryChangeInOrderOneRevisionEach) {
  EXPECT_EQ(Revision(), 1u);
  std::unique_ptr<Watching> w = MustWatch(kAlice);
  ConnectionId alice = Open(kAlice);
  Handle a = Alloc(alice, 100, "a");
  ASSERT_THAT(registry_->Seal(alice, BufferRef::ByName("a")), IsOk());
  Alloc(alice, 100, "b");
  ASSERT_THAT(registry_->Release(alice, a), IsOk());
  registry_->CloseConnection(alice);
  EXPECT_THAT(w->Drain(),
              ElementsAre("created a@2", "sealed a@3", "created b@4",
                          "released a@5", "released b@6"));
  EXPECT_EQ(Revision(), 6u);
  // Woken when its queue stops being empty, not once per event: nothing
  // drained it in between.
  EXPECT_EQ(w->wakes, 1);
  Alloc(Open(kAlice), 100, "c");
  EXPECT_EQ(w->wakes, 2);
}

TEST_F(RegistryWatchTest, ReleasedEventsSayWhy) {
  std::unique_ptr<Watching> w = MustWatch(kAlice);
  ConnectionId alice = Open(kAlice);
  Handle a = Alloc(alice, 100, "a");
  Alloc(alice, 100, "b");
  ASSERT_THAT(registry_->Release(alice, a), IsOk());
  registry_->CloseConnection(alice);
  std::vector<ReclaimReason> reasons;
  while (std::optional<WatchEvent> e = w->watch.queue->Pop()) {
    if (e->type == WatchEventType::kReleased) reasons.push_back(e->reason);
  }
  EXPECT_THAT(reasons, ElementsAre(ReclaimReason::kRelease,
                                   ReclaimReason::kClientClosed));
}

TEST_F(RegistryWatchTest, PrefixSelectsByName) {
  std::unique_ptr<Watching> w = MustWatch(kAlice, "cam.");
  ConnectionId alice = Open(kAlice);
  Alloc(alice, 100, "cam.1");
  Alloc(alice, 100, "mic.1");
  Alloc(alice, 100);  // unnamed: only an empty prefix sees it
  Alloc(alice, 100, "cam.2");
  EXPECT_THAT(w->Drain(), ElementsAre("created cam.1@2", "created cam.2@5"));
}

TEST_F(RegistryWatchTest, AWatcherSeesOnlyWhatItMaySee) {
  std::unique_ptr<Watching> bob = MustWatch(kBob);
  std::unique_ptr<Watching> root = MustWatch(kRootId);
  ConnectionId alice = Open(kAlice);
  Handle secret = Alloc(alice, 100, "secret");
  Alloc(alice, 100, "shared", {kAllReadOnly});
  ASSERT_THAT(registry_->Seal(alice, BufferRef::ByName("secret")), IsOk());
  ASSERT_THAT(registry_->Release(alice, secret), IsOk());
  EXPECT_THAT(bob->Drain(), ElementsAre("created shared@3"));
  EXPECT_EQ(root->Drain().size(), 4u);
}

TEST_F(RegistryWatchTest, ListRevisionThenWatchMissesNothing) {
  ConnectionId alice = Open(kAlice);
  Alloc(alice, 100, "a");
  bool more = false;
  uint64_t revision = 0;
  std::vector<BufferInfo> listed =
      registry_->List(kAlice, 0, 100, &more, &revision);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(revision, 2u);
  Alloc(alice, 100, "b");  // between List and Watch
  std::unique_ptr<Watching> w = MustWatch(kAlice, "", revision);
  Alloc(alice, 100, "c");
  EXPECT_THAT(w->Drain(), ElementsAre("created b@3", "created c@4"));
}

TEST_F(RegistryWatchTest, HistoryIsBoundedAndOldRevisionsAreRefused) {
  RegistryOptions options = DefaultOptions();
  options.watch.history = 3;
  Reset(options);
  ConnectionId alice = Open(kAlice);
  for (int i = 0; i < 5; ++i) Alloc(alice, 100, absl::StrCat("b", i));
  ASSERT_EQ(Revision(), 6u);  // changes 2..6; 4..6 kept
  Watching w;
  EXPECT_THAT(Watch(kAlice, "", 2, &w),
              StatusIs(Code::kOutOfRange,
                       HasSubstr("revision 2 is no longer kept (the oldest "
                                 "change kept is 4)")));
  EXPECT_THAT(Watch(kAlice, "", 2, &w), RefusedBy(Limit::kWatchHistory));
  std::unique_ptr<Watching> from3 = MustWatch(kAlice, "", 3);
  EXPECT_THAT(from3->Drain(),
              ElementsAre("created b2@4", "created b3@5", "created b4@6"));
  EXPECT_THAT(Watch(kAlice, "", 7, &w),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("revision 7 is ahead of the daemon's (6)")));
}

TEST_F(RegistryWatchTest, BadPrefixIsInvalid) {
  Watching w;
  EXPECT_THAT(Watch(kAlice, "../etc", 0, &w),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad prefix")));
  EXPECT_THAT(Watch(kAlice, std::string(200, 'x'), 0, &w),
              StatusIs(Code::kInvalidArgument, HasSubstr("bad prefix")));
}

TEST_F(RegistryWatchTest, WatchersPerScopeAreBounded) {
  RegistryOptions options = DefaultOptions();
  options.watch.max_watchers_per_connection = 2;
  Reset(options);
  Watching w1, w2, w3, other;
  ASSERT_THAT(Watch(kAlice, "", 0, &w1, "c1"), IsOk());
  absl::StatusOr<WatchHub::Watch> second = Watch(kAlice, "", 0, &w2, "c1");
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(Watch(kAlice, "", 0, &w3, "c1"),
              RefusedBy(Limit::kMaxWatchersPerConnection));
  EXPECT_THAT(Watch(kAlice, "", 0, &other, "c2"), IsOk());
  EXPECT_TRUE(registry_->CancelWatch(second->id));
  EXPECT_FALSE(registry_->CancelWatch(second->id));
  EXPECT_THAT(Watch(kAlice, "", 0, &w3, "c1"), IsOk());
  EXPECT_EQ(registry_->Stats().watchers, 3u);
}

TEST_F(RegistryWatchTest, AFullQueueLosesTheWatcherExplicitly) {
  RegistryOptions options = DefaultOptions();
  options.watch.queue_events = 2;
  Reset(options);
  std::unique_ptr<Watching> slow = MustWatch(kAlice);
  std::unique_ptr<Watching> fast = MustWatch(kAlice);
  ConnectionId alice = Open(kAlice);
  Alloc(alice, 100, "a");
  fast->Drain();
  Alloc(alice, 100, "b");
  fast->Drain();
  Alloc(alice, 100, "c");  // slow's third: no room
  Alloc(alice, 100, "d");
  EXPECT_EQ(registry_->Stats().watchers, 1u);  // slow is forgotten
  EXPECT_THAT(slow->Drain(),
              ElementsAre("created a@2", "created b@3", "lost @4"));
  EXPECT_THAT(slow->watch.queue->LostStatus(),
              StatusIs(Code::kResourceExhausted, HasSubstr("fell behind")));
  EXPECT_THAT(slow->watch.queue->LostStatus(),
              RefusedBy(Limit::kWatchQueueEvents));
  EXPECT_FALSE(registry_->CancelWatch(slow->watch.id));
  EXPECT_THAT(fast->Drain(), ElementsAre("created c@4", "created d@5"));
}

TEST_F(RegistryWatchTest, ADetachedQueueIsNoLongerWoken) {
  std::unique_ptr<Watching> w = MustWatch(kAlice);
  w->watch.queue->Detach();
  ConnectionId alice = Open(kAlice);
  Alloc(alice, 100, "a");
  EXPECT_EQ(w->wakes, 0);
  EXPECT_THAT(w->Drain(), ElementsAre("created a@2"));
}

}  // namespace
}  // namespace shmbroker::testing
