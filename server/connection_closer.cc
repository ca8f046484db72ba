#include "server/connection_closer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/log_rate_limiter.h"
#include "server/logging.h"
#include "server/memory_trim.h"

namespace shmbroker {

ConnectionCloser::ConnectionCloser(Registry* registry, Metrics* metrics,
                                   ReclaimLatencies* latencies)
    : registry_(registry), metrics_(metrics), latencies_(latencies) {}

ConnectionCloser::~ConnectionCloser() { Stop(); }

void ConnectionCloser::Start() {
  absl::MutexLock lock(&mu_);
  if (running_) return;
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
}

void ConnectionCloser::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!running_) return;
    stopping_ = true;
  }
  thread_.join();  // Run() ends what is queued first
  absl::MutexLock lock(&mu_);
  running_ = false;
}

void ConnectionCloser::Close(std::shared_ptr<ClientConnection> connection,
                             CloseReason reason, std::string why,
                             absl::Time noticed) {
  Pending pending{std::move(connection), reason, std::move(why), noticed};
  {
    absl::MutexLock lock(&mu_);
    if (running_ && !stopping_) {
      queue_.push_back(std::move(pending));
      return;
    }
  }
  End(pending);
}

void ConnectionCloser::Run() {
  for (;;) {
    Pending pending;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ConnectionCloser* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->queue_.empty() || self->stopping_;
          },
          this));
      if (queue_.empty()) return;  // stopping, and nothing left
      pending = std::move(queue_.front());
      queue_.pop_front();
    }
    End(pending);
  }
}

void ConnectionCloser::End(Pending& pending) {
  ClientConnection& connection = *pending.connection;
  CloseResult result = registry_->CloseConnection(
      connection.id, pending.reason == CloseReason::kShutdown
                         ? ReclaimReason::kShutdown
                         : ReclaimReason::kClientClosed);
  const absl::Duration reclaim = absl::Now() - pending.noticed;
  metrics_->ClientClosed(pending.reason, result.holds_dropped > 0, reclaim);
  TrimAfterReclaim(result.holds_dropped + result.buffers_reclaimed);
  if (result.holds_dropped > 0 && pending.reason != CloseReason::kShutdown) {
    latencies_->connection_close.Add(reclaim);
  }
  auto level =
      result.holds_dropped > 0 ? spdlog::level::info : spdlog::level::debug;
  // Say how many warnings about it were held back, if the daemon-wide limit
  // lets one more line through.
  const uint64_t held_back = connection.warnings.TakeSuppressed();
  uint64_t suppressed = 0;
  if (held_back > 0 && LogRateLimits::ClientWarnings().Allow(&suppressed)) {
    level = spdlog::level::warn;
  }
  spdlog::log(level,
              "client connection {} (pid {} uid {}) closed ({}): dropped {} "
              "holds, reclaimed {} buffers ({} bytes) in {}{}",
              connection.id, connection.identity.pid, connection.identity.uid,
              pending.why, result.holds_dropped, result.buffers_reclaimed,
              result.bytes_reclaimed, absl::FormatDuration(reclaim),
              held_back > 0 ? absl::StrCat("; ", held_back,
                                           " warnings about it suppressed")
                            : std::string());
}

}  // namespace shmbroker
