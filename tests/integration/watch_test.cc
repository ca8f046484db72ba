// Watch with the real daemon and real processes: every change in order,
// List + Watch under another process's churn, a watcher that falls behind,
// one that is killed, one of another uid, refusals, and shutdown.
#include <signal.h>

#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Type = client::WatchEvent::Type;

class WatchTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--socket_group=" + std::to_string(kNobody)};
  }

  ::testing::AssertionResult WatchersAre(uint64_t n) {
    return WaitForStatus(
        *client_, absl::StrCat(n, " watchers"),
        [n](const client::DaemonStatus& s) { return s.watchers == n; });
  }

  uint64_t Revision() {
    absl::StatusOr<client::DaemonStatus> s = client_->Status();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->revision : 0;
  }

  client::Buffer Alloc(const std::string& name,
                       std::vector<client::ShareRule> share = {}) {
    client::AllocateOptions options;
    options.size = 4096;
    options.name = name;
    options.share = std::move(share);
    absl::StatusOr<client::Buffer> b = client_->Allocate(options);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : client::Buffer();
  }

  static client::WatchEvent Next(client::Watcher& watcher) {
    absl::StatusOr<client::WatchEvent> e =
        watcher.Next(absl::Now() + kStateDeadline);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.value_or(client::WatchEvent{});
  }
};

TEST_F(WatchTest, EveryChangeInOrderWithIncreasingRevisions) {
  const uint64_t start = Revision();
  absl::StatusOr<std::unique_ptr<client::Watcher>> watcher =
      client_->Watch("frame");
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  {
    client::Buffer frame = Alloc("frame.1");
    Alloc("other");  // another prefix: not seen (and released at once)
    ASSERT_TRUE(frame.Seal().ok());
  }
  client::WatchEvent created = Next(**watcher);
  client::WatchEvent sealed = Next(**watcher);
  client::WatchEvent released = Next(**watcher);
  EXPECT_EQ(created.type, Type::kCreated);
  EXPECT_EQ(created.buffer.name, "frame.1");
  EXPECT_EQ(created.revision, start + 1);
  EXPECT_EQ(sealed.type, Type::kSealed);
  EXPECT_TRUE(sealed.buffer.sealed);
  EXPECT_EQ(sealed.revision, start + 4);  // "other": created, released
  EXPECT_EQ(released.type, Type::kReleased);
  EXPECT_EQ(released.reason, client::WatchEvent::Reason::kReleased);
  EXPECT_EQ(released.buffer.handle, created.buffer.handle);
  EXPECT_EQ(released.revision, start + 5);
  EXPECT_EQ(Revision(), start + 5);
  (*watcher)->Cancel();
  absl::StatusOr<client::WatchEvent> after = (*watcher)->Next();
  EXPECT_EQ(after.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(WatchersAre(0));
}

// Another process allocates and releases without pause; a List, then a
// Watch from its revision, must account for every change: the revisions
// after the List's arrive once each, in order, none missing, and applying
// them to the listing gives what a final List shows.
TEST_F(WatchTest, ListThenWatchFromItsRevisionMissesNothingUnderChurn) {
  Subprocess churn({LEASE_WORKER_PATH, daemon_->socket(), "alloc-loop", "50"});
  ASSERT_TRUE(churn.WaitForOutput("ready", absl::Seconds(20)));
  absl::StatusOr<client::ListResult> listed = client_->ListWithRevision();
  ASSERT_TRUE(listed.ok()) << listed.status();
  absl::StatusOr<std::unique_ptr<client::Watcher>> watcher =
      client_->Watch("", {.after_revision = listed->revision});
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  std::set<uint64_t> live;
  for (const client::BufferInfo& b : listed->buffers) live.insert(b.handle);
  // Let it churn on for a few hundred changes.
  ASSERT_TRUE(WaitForStatus(*client_, "300 more changes",
                            [&](const client::DaemonStatus& s) {
                              return s.revision >= listed->revision + 300;
                            }));
  churn.Signal(SIGKILL);
  churn.Wait();
  // The worker's held buffer goes with it: the last change.
  ASSERT_TRUE(WaitForStatus(*client_, "the worker's buffers gone",
                            [](const client::DaemonStatus& s) {
                              return s.buffers == 0 && s.clients == 1;
                            }));
  const uint64_t last = Revision();
  uint64_t expected = listed->revision + 1;
  while (expected <= last) {
    client::WatchEvent e = Next(**watcher);
    ASSERT_EQ(e.revision, expected) << "a change was missed or repeated";
    ++expected;
    if (e.type == Type::kCreated) {
      // A later page may show it already (the listing is not atomic)...
      live.insert(e.buffer.handle);
    } else if (e.type == Type::kReleased) {
      live.erase(e.buffer.handle);
    } else {
      ASSERT_NE(e.type, Type::kLost);
    }
  }
  absl::StatusOr<std::vector<client::BufferInfo>> now = client_->List();
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_TRUE(now->empty());
  EXPECT_TRUE(live.empty()) << live.size() << " buffers never released";
  // And nothing more.
  EXPECT_EQ(
      (*watcher)->Next(absl::Now() + absl::Milliseconds(100)).status().code(),
      absl::StatusCode::kDeadlineExceeded);
}

TEST_F(WatchTest, AKilledWatcherIsForgotten) {
  Subprocess watcher(daemon_->CliArgs({"watch", "--json"}));
  ASSERT_TRUE(WatchersAre(1));
  { client::Buffer b = Alloc("seen"); }
  ASSERT_TRUE(watcher.WaitForOutput("\"released\"", absl::Seconds(20)));
  watcher.Signal(SIGKILL);
  watcher.Wait();
  EXPECT_TRUE(WatchersAre(0));
}

TEST_F(WatchTest, TheCliPrintsJsonLinesAndExitsZeroOnSigint) {
  Subprocess watcher(daemon_->CliArgs({"watch", "cli.", "--json"}));
  ASSERT_TRUE(WatchersAre(1));
  const uint64_t start = Revision();
  {
    client::Buffer b = Alloc("cli.a");
    ASSERT_TRUE(b.Seal().ok());
  }
  ASSERT_TRUE(watcher.WaitForOutput("\"released\"", absl::Seconds(20)));
  watcher.Signal(SIGINT);
  Finished f = watcher.Wait();
  EXPECT_EQ(f.exit_code, 0) << f.err;
  std::vector<std::string> lines =
      absl::StrSplit(f.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << f.out;
  const char* types[] = {"created", "sealed", "released"};
  for (size_t i = 0; i < 3; ++i) {
    nlohmann::json e = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(e["type"], types[i]);
    EXPECT_EQ(e["name"], "cli.a");
    EXPECT_EQ(e["revision"], start + 1 + i);
    EXPECT_GT(e["handle"].get<uint64_t>(), 0u);
  }
  EXPECT_EQ(nlohmann::json::parse(lines[2])["reason"], "released");
  EXPECT_TRUE(WatchersAre(0));
}

TEST_F(WatchTest, AWatcherSeesNothingItMayNotSee) {
  ASSERT_TRUE(RunningAsRoot());
  ShareCliWithOtherUids(*daemon_);
  Subprocess nobody(CliArgsAs(*daemon_, kNobody, {"watch", "--json"}), "",
                    CliEnvAs(*daemon_));
  ASSERT_TRUE(WatchersAre(1));
  {
    client::Buffer secret = Alloc("secret");
    ASSERT_TRUE(secret.Seal().ok());
  }
  client::Buffer shared =
      Alloc("shared", {{client::ShareRule::Scope::kUid, kNobody, false}});
  ASSERT_TRUE(nobody.WaitForOutput("\"shared\"", absl::Seconds(20)));
  nobody.Signal(SIGTERM);
  Finished f = nobody.Wait();
  EXPECT_EQ(f.exit_code, 0) << f.err;
  EXPECT_THAT(f.out, Not(HasSubstr("secret")));
  std::vector<std::string> lines =
      absl::StrSplit(f.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 1u) << f.out;
}

TEST_F(WatchTest, BadRevisionsAndPrefixesAreRefused) {
  absl::StatusOr<std::unique_ptr<client::Watcher>> w =
      client_->Watch("", {.after_revision = Revision() + 1000});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("ahead of the daemon's"));
  w = client_->Watch("../etc");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("bad prefix"));
  Finished cli = daemon_->Cli({"watch", "a/b"});
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_THAT(cli.err, HasSubstr("bad prefix"));
  EXPECT_TRUE(WatchersAre(0));
}

TEST_F(WatchTest, NoClientConnectionIsNeeded) {
  client::ClientOptions options;
  options.socket_path = daemon_->socket();
  options.open_client_connection = false;
  absl::StatusOr<std::unique_ptr<client::Client>> plain =
      client::Client::Connect(options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  absl::StatusOr<std::unique_ptr<client::Watcher>> w = (*plain)->Watch("");
  ASSERT_TRUE(w.ok()) << w.status();
  client::Buffer b = Alloc("x");
  EXPECT_EQ(Next(**w).buffer.name, "x");
}

TEST_F(WatchTest, TheDaemonStopsPromptlyWithWatchersOpen) {
  Subprocess watcher(daemon_->CliArgs({"watch"}));
  absl::StatusOr<std::unique_ptr<client::Watcher>> w = client_->Watch("");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(WatchersAre(2));
  const absl::Time start = absl::Now();
  Finished f = daemon_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(f.exit_code, 0) << f.err;
  absl::StatusOr<client::WatchEvent> ended =
      (*w)->Next(absl::Now() + kStateDeadline);
  EXPECT_FALSE(ended.ok());
  Finished cli = watcher.Wait(absl::Seconds(20));
  EXPECT_EQ(cli.exit_code, 1);
}

class WatchLimitsTest : public WatchTest {
 protected:
  std::vector<std::string> DaemonFlags() override {
    return {"--watch_history=8", "--watch_queue_events=16",
            "--max_watchers_per_connection=2"};
  }
};

TEST_F(WatchLimitsTest, ACompactedRevisionIsOutOfRange) {
  const uint64_t start = Revision();
  for (int i = 0; i < 10; ++i) Alloc(absl::StrCat("b", i));  // 20 changes
  absl::StatusOr<std::unique_ptr<client::Watcher>> w =
      client_->Watch("", {.after_revision = start});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(w.status().message(), HasSubstr("List again"));
  EXPECT_THAT(w.status().message(), HasSubstr("(--watch_history)"));
  // The recent past is kept.
  w = client_->Watch("", {.after_revision = Revision() - 2});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(Next(**w).revision, Revision() - 1);
}

TEST_F(WatchLimitsTest, WatchersPerConnectionAreBounded) {
  auto w1 = client_->Watch("");
  auto w2 = client_->Watch("");
  ASSERT_TRUE(w1.ok() && w2.ok());
  auto w3 = client_->Watch("");
  EXPECT_EQ(w3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(w3.status().message(),
              HasSubstr("(--max_watchers_per_connection)"));
  // Another client connection has its own.
  auto other = daemon_->Connect();
  ASSERT_TRUE(other.ok());
  auto theirs = (*other)->Watch("");
  EXPECT_TRUE(theirs.ok()) << theirs.status();
  w1->reset();  // cancels: room again
  ASSERT_TRUE(WatchersAre(2));
  EXPECT_TRUE(client_->Watch("").ok());
}

// A stopped watcher's stream backs up; its queue in the daemon fills, and
// it is dropped with a lost event, which it prints once it runs again.
TEST_F(WatchLimitsTest, AWatcherThatFallsBehindGetsTheLostSignal) {
  Subprocess watcher(daemon_->CliArgs({"watch", "--json"}));
  ASSERT_TRUE(WatchersAre(1));
  watcher.Signal(SIGSTOP);
  client::AllocateOptions options;
  options.size = 64;
  // Until the transport's buffers are full and then the queue: the daemon
  // forgets the watcher the moment its queue overflows.
  ASSERT_TRUE(WaitFor("the watcher dropped", [&](std::string* seen) {
    for (int i = 0; i < 1000; ++i) {
      absl::StatusOr<client::Buffer> b = client_->Allocate(options);
      if (!b.ok()) return false;
    }
    absl::StatusOr<client::DaemonStatus> s = client_->Status();
    *seen = s.ok() ? StatusText(*s) : s.status().ToString();
    return s.ok() && s->watchers == 0;
  }));
  watcher.Signal(SIGCONT);
  Finished f = watcher.Wait(absl::Seconds(30));
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.err, HasSubstr("fell behind"));
  EXPECT_THAT(f.err, HasSubstr("(--watch_queue_events)"));
  std::vector<std::string> lines =
      absl::StrSplit(f.out, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  nlohmann::json lost = nlohmann::json::parse(lines.back());
  EXPECT_EQ(lost["type"], "lost");
  // Everything before it arrived in order, without gaps.
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_EQ(
        nlohmann::json::parse(lines[i])["revision"].get<uint64_t>(),
        nlohmann::json::parse(lines[i - 1])["revision"].get<uint64_t>() + 1);
  }
}

}  // namespace
}  // namespace shmbroker::testing
