#include "client/src/lease_keeper.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/src/proto_convert.h"
#include "client/src/test_hooks.h"

namespace shmbroker::client {
namespace {

// Stream errors after which renewing can never work again on this
// connection (it was closed, or the daemon refuses its token).
bool ConnectionIsGone(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
         status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
}

}  // namespace

LeaseKeeper::LeaseKeeper(v1::Broker::Stub* stub,
                         std::function<void(grpc::ClientContext*)> prepare,
                         LeaseLossCallback on_lost)
    : stub_(stub), prepare_(std::move(prepare)), on_lost_(std::move(on_lost)) {
  thread_ = std::thread([this] { Run(); });
}

LeaseKeeper::~LeaseKeeper() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
    changed_.SignalAll();
  }
  thread_.join();
}

void LeaseKeeper::Track(uint64_t lease_id, absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  live_[lease_id] =
      Entry{ttl, ttl == absl::ZeroDuration() ? now : now + ttl / 3};
  changed_.SignalAll();
}

void LeaseKeeper::Forget(uint64_t lease_id) {
  absl::MutexLock lock(&mu_);
  live_.erase(lease_id);
}

absl::Status LeaseKeeper::LeaseStatus(uint64_t lease_id) const {
  absl::MutexLock lock(&mu_);
  auto it = lost_.find(lease_id);
  return it == lost_.end() ? absl::OkStatus() : it->second;
}

void LeaseKeeper::MarkLost(uint64_t lease_id, const absl::Status& why) {
  {
    absl::MutexLock lock(&mu_);
    if (live_.erase(lease_id) == 0) return;  // forgotten meanwhile
    lost_[lease_id] = why;
  }
  if (on_lost_) on_lost_(lease_id, why);
}

void LeaseKeeper::Run() {
  absl::Duration backoff = absl::Milliseconds(50);
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      // Open a stream only when there is something to keep.
      while (!stopping_ && live_.empty()) changed_.Wait(&mu_);
      if (stopping_) return;
    }
    grpc::ClientContext ctx;
    prepare_(&ctx);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stream_ctx_ = &ctx;
    }
    auto stream = stub_->KeepAlive(&ctx);
    while (RenewDue(*stream)) backoff = absl::Milliseconds(50);
    stream->WritesDone();
    const grpc::Status status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      stream_ctx_ = nullptr;
      if (stopping_) return;
    }
    if (ConnectionIsGone(status)) {
      // Nothing can be renewed any more: every lease is as good as lost.
      const absl::Status why(
          static_cast<absl::StatusCode>(status.error_code()),
          absl::StrCat("cannot renew leases: ", status.error_message()));
      std::vector<uint64_t> ids;
      {
        absl::MutexLock lock(&mu_);
        for (const auto& [id, entry] : live_) ids.push_back(id);
      }
      for (uint64_t id : ids) MarkLost(id, why);
      continue;
    }
    if (status.ok()) continue;  // closed for want of leases to keep
    // The stream broke (e.g. the daemon is restarting): try again soon.
    absl::MutexLock lock(&mu_);
    changed_.WaitWithTimeout(&mu_, backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

bool LeaseKeeper::RenewDue(
    grpc::ClientReaderWriter<v1::KeepAliveRequest, v1::KeepAliveResponse>&
        stream) {
  std::vector<uint64_t> due;
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      if (stopping_) return false;
      if (live_.empty()) return false;  // close the stream; reopen on Track
      const absl::Time now = absl::Now();
      absl::Time earliest = absl::InfiniteFuture();
      for (const auto& [id, entry] : live_) {
        if (entry.next <= now) due.push_back(id);
        earliest = std::min(earliest, entry.next);
      }
      if (!due.empty()) break;
      changed_.WaitWithDeadline(&mu_, earliest);
    }
  }
  for (uint64_t id : due) {
    v1::KeepAliveRequest request;
    request.set_lease_id(id);
    v1::KeepAliveResponse response;
    if (!stream.Write(request)) return false;
    PausePoint("keepalive_sent");
    if (!stream.Read(&response)) return false;
    if (response.error_code() != 0) {
      MarkLost(
          id, absl::Status(static_cast<absl::StatusCode>(response.error_code()),
                           response.error_message()));
      continue;
    }
    const absl::Duration ttl = FromProto(response.granted_ttl());
    absl::MutexLock lock(&mu_);
    if (auto it = live_.find(id); it != live_.end()) {
      it->second.ttl = ttl;
      it->second.next = absl::Now() + ttl / 3;
    }
  }
  return true;
}

}  // namespace shmbroker::client
