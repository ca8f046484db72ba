// Watcher: a Watch stream read by a gRPC callback reactor, which holds no
// thread: each event read is queued for Next, and the next read starts at
// once (the daemon bounds what it queues for a slow watcher; here the
// backlog is what the application has not taken yet).
#include "shmbroker/watcher.h"

#include <deque>
#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "client/src/proto_convert.h"
#include "client/src/test_hooks.h"
#include "client/src/watcher_stream.h"

namespace shmbroker::client {

const char* WatchEventTypeName(WatchEvent::Type type) {
  switch (type) {
    case WatchEvent::Type::kCreated:
      return "created";
    case WatchEvent::Type::kSealed:
      return "sealed";
    case WatchEvent::Type::kReleased:
      return "released";
    case WatchEvent::Type::kLost:
      return "lost";
  }
  return "unknown";
}

const char* ReleaseReasonName(WatchEvent::Reason reason) {
  switch (reason) {
    case WatchEvent::Reason::kNone:
      return "";
    case WatchEvent::Reason::kReleased:
      return "released";
    case WatchEvent::Reason::kClientGone:
      return "client_gone";
    case WatchEvent::Reason::kLeaseExpired:
      return "lease_expired";
    case WatchEvent::Reason::kLeaseRevoked:
      return "lease_revoked";
    case WatchEvent::Reason::kShutdown:
      return "shutdown";
    case WatchEvent::Reason::kNotResumed:
      return "not_resumed";
  }
  return "unknown";
}

Watcher::Stream::Stream(std::unique_ptr<v1::Broker::Stub> stub,
                        std::function<void(grpc::ClientContext*)> prepare,
                        std::function<absl::Status(const grpc::Status&)> map)
    : stub_(std::move(stub)), map_(std::move(map)) {
  prepare(&ctx_);
}

void Watcher::Stream::Start(const v1::WatchRequest& request) {
  stub_->async()->Watch(&ctx_, &request, this);
  StartRead(&in_);
  StartCall();
}

absl::Status Watcher::Stream::AwaitStarted(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto started = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return started_ || end_.has_value();
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&started), deadline)) {
    return absl::DeadlineExceededError("the daemon did not start the Watch");
  }
  if (started_) return absl::OkStatus();
  return *end_;
}

void Watcher::Stream::OnReadInitialMetadataDone(bool ok) {
  absl::MutexLock lock(&mu_);
  // The daemon sends the headers once the watcher is registered; a refusal
  // comes as the status alone (OnDone).
  if (ok) started_ = true;
}

void Watcher::Stream::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended: OnDone has its status
  {
    absl::MutexLock lock(&mu_);
    events_.push_back(FromProto(in_));
  }
  StartRead(&in_);
}

void Watcher::Stream::OnDone(const grpc::Status& status) {
  absl::Status end =
      status.ok() ? absl::CancelledError("the Watch ended") : map_(status);
  absl::MutexLock lock(&mu_);
  end_ = std::move(end);
}

void Watcher::Stream::AwaitDone() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](std::optional<absl::Status>* end) { return end->has_value(); },
      &end_));
}

absl::StatusOr<WatchEvent> Watcher::Stream::Next(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !events_.empty() || end_.has_value();
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
    return absl::DeadlineExceededError("no watch event before the deadline");
  }
  if (events_.empty()) return *end_;
  WatchEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void Watcher::Stream::Cancel() { ctx_.TryCancel(); }

Watcher::Watcher(std::unique_ptr<Stream> stream) : stream_(std::move(stream)) {}

Watcher::~Watcher() {
  stream_->Cancel();
  stream_->AwaitDone();
}

absl::StatusOr<WatchEvent> Watcher::Next(absl::Time deadline) {
  absl::StatusOr<WatchEvent> event = stream_->Next(deadline);
  if (event.ok()) PausePoint("watch_event");
  return event;
}

void Watcher::Cancel() { stream_->Cancel(); }

}  // namespace shmbroker::client
