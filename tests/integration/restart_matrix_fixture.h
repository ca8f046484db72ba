// The restart matrix's fixture (restart_matrix_test.cc has the test and
// what it checks): the daemon's flags, the workers (restart_worker.cc) it
// starts and reads, and the checks each round runs.
#ifndef SHMBROKER_TESTS_INTEGRATION_RESTART_MATRIX_FIXTURE_H_
#define SHMBROKER_TESTS_INTEGRATION_RESTART_MATRIX_FIXTURE_H_

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/restart_support.h"
#include "tests/integration/test_daemon.h"
#include "tests/integration/wait_for.h"

namespace shmbroker::testing {

constexpr int kHolders = 4;
// Clients resume within ~100 ms of the restart here: 15 times that, and
// twice as much again under ASan.
#if defined(__SANITIZE_ADDRESS__)
constexpr absl::Duration kGrace = absl::Seconds(3);
#else
constexpr absl::Duration kGrace = absl::Milliseconds(1500);
#endif
// The workers' leases (their own and their default ones): longer than the
// worst outage a loaded or sanitized CI machine gives a round (kill,
// start, reconnect backoff), so that no lease runs out while the daemon is
// away; with 2 s, 1 CI run in 3 lost one and the worker's next Allocate
// under it failed.
constexpr absl::Duration kHolderLeaseTtl = absl::Seconds(6);
constexpr char kDetachedPosix[] = "detached-posix";

// One restart_worker process and what it last reported.
struct Worker {
  std::string tag;
  std::unique_ptr<Subprocess> process;
  int resumes = 0;  // reported so far
  int checks = 0;
  std::map<uint64_t, uint64_t> handles;  // held: handle -> charged bytes
  std::set<uint64_t> leases;
  uint64_t churn_failures = 0;  // allocations refused by a dying daemon
};

// The line of `w`'s output that starts with `head` (e.g. "check 3 "), once
// it is complete; nullopt if it does not come.
inline std::optional<std::string> AwaitLine(Worker& w,
                                            const std::string& head) {
  std::optional<std::string> out =
      w.process->WaitForOutput(head, kStateDeadline);
  if (!out.has_value()) return std::nullopt;
  const size_t at = out->rfind(head);
  return out->substr(at, out->find('\n', at) - at);
}

// A field "key=a,b,c" of a report line: its comma-separated values.
inline std::vector<std::string> Field(const std::string& line,
                                      const std::string& key) {
  for (absl::string_view word : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&word, key + "=")) {
      return absl::StrSplit(word, ',', absl::SkipEmpty());
    }
  }
  return {};
}

class RestartMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(RunningAsRoot());  // the reader runs as another uid
    char tmpl[] = "/tmp/shmbroker-rmatrix-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::chmod(dir_.c_str(), 0711);
    StartDaemon();
    ASSERT_TRUE(daemon_->started()) << daemon_->startup_output();
    ShareCliWithOtherUids(*daemon_);
    worker_copy_ = dir_ + "/restart_worker";
    std::filesystem::copy_file(RESTART_WORKER_PATH, worker_copy_);
    ::chmod(worker_copy_.c_str(), 0755);
    client::ClientOptions options;
    options.socket_path = daemon_->socket();
    options.on_resumed = [this](const client::ResumeReport&) {
      own_resumes_.fetch_add(1);
    };
    auto c = client::Client::Connect(options);
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }
  void TearDown() override {
    workers_.clear();
    client_.reset();
    daemon_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void StartDaemon() {
    daemon_ = std::make_unique<TestDaemon>(
        std::vector<std::string>{
            "--state_dir=" + dir_ + "/state",
            absl::StrCat("--restart_grace=", absl::FormatDuration(kGrace)),
            absl::StrCat("--lease_default_ttl=",
                         absl::FormatDuration(kHolderLeaseTtl)),
            "--socket_group=65534", "--shm_prefix=" + shm_prefix_},
        dir_);
  }

  std::unique_ptr<Worker> StartWorker(const std::string& tag,
                                      std::vector<std::string> args,
                                      bool as_nobody = false) {
    auto w = std::make_unique<Worker>();
    w->tag = tag;
    std::vector<std::string> argv, env;
    if (as_nobody) {
      argv = AsUid(kNobody, {worker_copy_});
      env = CliEnvAs(*daemon_);
    } else {
      argv = {RESTART_WORKER_PATH};
    }
    argv.push_back(daemon_->socket());
    argv.insert(argv.end(), args.begin(), args.end());
    w->process = std::make_unique<Subprocess>(argv, "", env);
    return w;
  }

  // A holder that has allocated everything, or a failure.
  ::testing::AssertionResult AddHolder(const std::string& tag) {
    std::unique_ptr<Worker> w =
        StartWorker(tag, {"holder", tag, std::to_string(kNobody)});
    if (!w->process->WaitForOutput("ready", kStateDeadline)) {
      return ::testing::AssertionFailure()
             << "holder " << tag << " not ready: " << w->process->Wait().out;
    }
    workers_.push_back(std::move(w));
    return ::testing::AssertionSuccess();
  }

  // A producer's buffer under a detached lease, the producer gone: returns
  // the lease.
  uint64_t Produce(const std::string& name, const std::string& backing,
                   const std::string& ttl) {
    std::unique_ptr<Worker> w =
        StartWorker("producer", {"producer", name, backing, ttl});
    const std::optional<std::string> line = AwaitLine(*w, "produced ");
    const Finished f = w->process->Wait();
    EXPECT_EQ(f.exit_code, 0) << f.out;
    if (!line.has_value()) {
      ADD_FAILURE() << "no \"produced\" line: " << f.out;
      return 0;
    }
    std::vector<std::string> words = absl::StrSplit(*line, ' ');
    uint64_t lease = 0;
    EXPECT_TRUE(words.size() == 3 && absl::SimpleAtoi(words[2], &lease))
        << *line;
    return lease;
  }

  void Restart(int signal) {
    if (signal == SIGKILL) {
      daemon_->Kill();
    } else {
      Finished f = daemon_->Stop(SIGTERM);
      EXPECT_TRUE(ExitedCleanly(f));
    }
    daemon_.reset();
  }

  // Each worker's report of its Nth resume; "" when all came, else what
  // went wrong.
  std::string AwaitResumes() {
    std::string failed;
    for (auto& w : workers_) {
      const std::string head = absl::StrCat("resume ", ++w->resumes, " ");
      const std::optional<std::string> line = AwaitLine(*w, head);
      if (!line.has_value()) {
        absl::StrAppend(&failed, w->tag, ": no \"", head, "\"; ");
      } else if (!absl::StrContains(*line, " refused=0 lost=0")) {
        absl::StrAppend(&failed, w->tag, ": ", *line, "; ");
      }
    }
    return failed;
  }

  // Asks every worker to check its bytes, and reads what each holds.
  std::string CheckWorkers() {
    for (auto& w : workers_) w->process->Signal(SIGUSR1);
    std::string failed;
    for (auto& w : workers_) {
      const std::string head = absl::StrCat("check ", ++w->checks, " ");
      const std::optional<std::string> line = AwaitLine(*w, head);
      if (!line.has_value() || !absl::StartsWith(*line, head + "ok ") ||
          !absl::StrContains(*line, " refused=0 lost=0")) {
        std::string why = line.value_or("no " + head);
        if (!line.has_value()) {
          // It died, or hangs: what it said last says which (the test
          // fails either way, so waiting a second and killing it is fine).
          const Finished f = w->process->Wait(absl::Seconds(1));
          absl::StrAppend(
              &why, " (exit ", f.exit_code, ", signal ", f.signal,
              "; its output ends: ",
              f.out.substr(f.out.size() > 600 ? f.out.size() - 600 : 0), ")");
        }
        absl::StrAppend(&failed, w->tag, ": ", why, "; ");
        continue;
      }
      w->handles.clear();
      for (const std::string& h : Field(*line, "handles")) {
        std::pair<std::string, std::string> parts = absl::StrSplit(h, ':');
        uint64_t handle = 0, bytes = 0;
        EXPECT_TRUE(absl::SimpleAtoi(parts.first, &handle) &&
                    absl::SimpleAtoi(parts.second, &bytes))
            << *line;
        w->handles[handle] = bytes;
      }
      for (const std::string& n : Field(*line, "churn_failures")) {
        EXPECT_TRUE(absl::SimpleAtoi(n, &w->churn_failures)) << *line;
      }
      w->leases.clear();
      for (const std::string& l : Field(*line, "leases")) {
        uint64_t id = 0;
        EXPECT_TRUE(absl::SimpleAtoi(l, &id)) << *line;
        w->leases.insert(id);
      }
    }
    return failed;
  }

  std::string dir_;
  std::string worker_copy_;
  const std::string shm_prefix_ = absl::StrCat("rmatrix-", ::getpid());
  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<client::Client> client_;
  std::vector<std::unique_ptr<Worker>> workers_;  // holders, then the reader
  std::atomic<int> own_resumes_{0};               // client_'s
};

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_RESTART_MATRIX_FIXTURE_H_
