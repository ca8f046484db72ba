// PausePoint in forked children: the environment is read once per process,
// so each case forks before anything calls it, and the parent never does.
#include "client/src/test_hooks.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace shmbroker::client {
namespace {

struct Child {
  pid_t pid = -1;
  int stderr_read = -1;  // the child's stderr
};

// Forks a child that sets SHMBROKER_TEST_PAUSE_AT to `pause_at` (unset when
// null), passes the points in `points` in order, then exits 0.
Child Spawn(const char* pause_at, std::initializer_list<const char*> points) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDERR_FILENO);
    if (pause_at == nullptr) {
      ::unsetenv("SHMBROKER_TEST_PAUSE_AT");
    } else {
      ::setenv("SHMBROKER_TEST_PAUSE_AT", pause_at, 1);
    }
    for (const char* point : points) PausePoint(point);
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  return {pid, pipe_fds[0]};
}

std::string ReadSome(int fd) {
  char buffer[256];
  const ssize_t n = ::read(fd, buffer, sizeof(buffer));
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}

TEST(PausePointTest, StopsAtTheNamedPointUntilKilled) {
  Child child = Spawn("attach_reply", {"allocate_reply", "attach_reply"});
  ASSERT_GT(child.pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child.pid, &status, WUNTRACED), child.pid);
  ASSERT_TRUE(WIFSTOPPED(status)) << "status " << status;
  EXPECT_EQ(WSTOPSIG(status), SIGSTOP);
  EXPECT_EQ(ReadSome(child.stderr_read), "shmbroker: paused at attach_reply\n");
  ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ::close(child.stderr_read);
}

TEST(PausePointTest, AHitCountStopsAtThatHitOnly) {
  Child child =
      Spawn("attach_reply:3", {"attach_reply", "allocate_reply", "attach_reply",
                               "attach_reply", "attach_reply"});
  ASSERT_GT(child.pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child.pid, &status, WUNTRACED), child.pid);
  ASSERT_TRUE(WIFSTOPPED(status)) << "status " << status;
  EXPECT_EQ(ReadSome(child.stderr_read), "shmbroker: paused at attach_reply\n");
  // Once only: the fourth hit passes.
  ASSERT_EQ(::kill(child.pid, SIGCONT), 0);
  ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(ReadSome(child.stderr_read), "");
  ::close(child.stderr_read);
}

TEST(PausePointTest, ContinuesAfterSigcont) {
  Child child = Spawn("release_sent", {"release_sent"});
  ASSERT_GT(child.pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child.pid, &status, WUNTRACED), child.pid);
  ASSERT_TRUE(WIFSTOPPED(status));
  ASSERT_EQ(::kill(child.pid, SIGCONT), 0);
  ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ::close(child.stderr_read);
}

TEST(PausePointTest, OtherPointsAndAnUnsetVariablePassSilently) {
  for (const char* pause_at :
       {static_cast<const char*>(nullptr), "", "keepalive_sent", "attach",
        "attach_reply:2", "attach_reply:0"}) {
    Child child = Spawn(pause_at, {"allocate_reply", "attach_reply"});
    ASSERT_GT(child.pid, 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child.pid, &status, WUNTRACED), child.pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << (pause_at == nullptr ? "(unset)" : pause_at) << ": " << status;
    EXPECT_EQ(ReadSome(child.stderr_read), "");
    ::close(child.stderr_read);
  }
}

}  // namespace
}  // namespace shmbroker::client
