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

absl::Time Expiry(absl::Time renewed, absl::Duration ttl) {
  return ttl == absl::ZeroDuration() ? absl::InfiniteFuture() : renewed + ttl;
}

}  // namespace

LeaseKeeper::LeaseKeeper(
    v1::Broker::Stub* stub, std::function<void(grpc::ClientContext*)> prepare,
    LeaseLossCallback on_lost,
    std::function<std::optional<std::string>()> closing_text)
    : stub_(stub),
      prepare_(std::move(prepare)),
      on_lost_(std::move(on_lost)),
      closing_text_(std::move(closing_text)) {
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
  // A daemon that lost its books may hand out a lost lease's id again.
  lost_.erase(lease_id);
  const absl::Time now = absl::Now();
  live_[lease_id] = Entry{
      ttl, ttl == absl::ZeroDuration() ? now : now + ttl / 3, Expiry(now, ttl)};
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

void LeaseKeeper::Pause(GiveUpReason why) {
  absl::MutexLock lock(&mu_);
  paused_ = true;
  ++epoch_;
  give_up_ = std::move(why);
  if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
  changed_.SignalAll();
}

bool LeaseKeeper::paused() const {
  absl::MutexLock lock(&mu_);
  return paused_;
}

std::vector<uint64_t> LeaseKeeper::Kept() const {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : live_) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<uint64_t> LeaseKeeper::Resume(
    const std::vector<Adopted>& adopted,
    const std::vector<std::pair<uint64_t, absl::Status>>& refused) {
  std::vector<uint64_t> given_up;
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  for (const Adopted& lease : adopted) {
    auto it = live_.find(lease.id);
    if (it == live_.end()) {
      if (lost_.contains(lease.id)) given_up.push_back(lease.id);
      continue;
    }
    it->second.ttl = lease.granted_ttl;
    it->second.expires = now + lease.ttl_left;
    it->second.next = now + std::min(lease.ttl_left, lease.granted_ttl) / 3;
  }
  for (const auto& [id, why] : refused) MarkLostLocked(id, why);
  paused_ = false;
  ++epoch_;
  give_up_ = nullptr;
  changed_.SignalAll();
  return given_up;
}

void LeaseKeeper::MarkLost(uint64_t lease_id, const absl::Status& why,
                           uint64_t epoch) {
  absl::MutexLock lock(&mu_);
  if (paused_ || epoch != epoch_) return;  // not this daemon's word
  MarkLostLocked(lease_id, why);
}

void LeaseKeeper::MarkLostLocked(uint64_t lease_id, const absl::Status& why) {
  if (live_.erase(lease_id) == 0) return;  // forgotten, or lost already
  lost_[lease_id] = why;
  unreported_.emplace_back(lease_id, why);
  changed_.SignalAll();
}

absl::Time LeaseKeeper::GiveUpExpiredLocked() {
  const absl::Time now = absl::Now();
  absl::Time earliest = absl::InfiniteFuture();
  std::vector<std::pair<uint64_t, absl::Duration>> expired;
  for (const auto& [id, entry] : live_) {
    if (entry.expires <= now) {
      expired.emplace_back(id, entry.ttl);
    } else {
      earliest = std::min(earliest, entry.expires);
    }
  }
  std::sort(expired.begin(), expired.end());
  for (const auto& [id, ttl] : expired) {
    MarkLostLocked(id, give_up_ ? give_up_(id, ttl)
                                : absl::UnavailableError(absl::StrCat(
                                      "lease ", id, " ran out its TTL")));
  }
  return earliest;
}

void LeaseKeeper::Report() {
  std::vector<std::pair<uint64_t, absl::Status>> losses;
  {
    absl::MutexLock lock(&mu_);
    losses.swap(unreported_);
  }
  if (!on_lost_) return;
  for (const auto& [id, why] : losses) on_lost_(id, why);
}

void LeaseKeeper::Run() {
  absl::Duration backoff = absl::Milliseconds(50);
  for (;;) {
    Report();
    uint64_t epoch = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (!unreported_.empty()) continue;
      if (paused_) {
        const absl::Time next_expiry = GiveUpExpiredLocked();
        if (unreported_.empty()) changed_.WaitWithDeadline(&mu_, next_expiry);
        continue;
      }
      // Open a stream only when there is something to keep.
      if (live_.empty()) {
        changed_.Wait(&mu_);
        continue;
      }
      epoch = epoch_;
    }
    grpc::ClientContext ctx;
    prepare_(&ctx);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (paused_ || epoch != epoch_) continue;
      stream_ctx_ = &ctx;
    }
    auto stream = stub_->KeepAlive(&ctx);
    while (RenewDue(*stream, epoch)) {
      Report();
      backoff = absl::Milliseconds(50);
    }
    stream->WritesDone();
    const grpc::Status status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      stream_ctx_ = nullptr;
      if (stopping_) return;
      if (paused_ || epoch != epoch_) continue;
    }
    if (ConnectionIsGone(status)) {
      // Nothing can be renewed any more: every lease is as good as lost. The
      // daemon said why on the fd channel before it closed the connection
      // (its default lease expired, a protocol error): that is the reason.
      std::optional<std::string> text;
      if (closing_text_) text = closing_text_();
      const absl::Status why(
          static_cast<absl::StatusCode>(status.error_code()),
          text.has_value()
              ? *text
              : absl::StrCat("cannot renew leases: ", status.error_message()));
      for (uint64_t id : Kept()) MarkLost(id, why, epoch);
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
        stream,
    uint64_t epoch) {
  std::vector<uint64_t> due;
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      if (stopping_ || paused_ || epoch != epoch_) return false;
      if (live_.empty()) return false;  // close the stream; reopen on Track
      if (!unreported_.empty()) return true;  // report first
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
    const absl::Time sent = absl::Now();
    if (!stream.Write(request)) return false;
    PausePoint("keepalive_sent");
    if (!stream.Read(&response)) return false;
    if (response.error_code() != 0) {
      MarkLost(
          id,
          absl::Status(static_cast<absl::StatusCode>(response.error_code()),
                       response.error_message()),
          epoch);
      continue;
    }
    const absl::Duration ttl = FromProto(response.granted_ttl());
    absl::MutexLock lock(&mu_);
    if (paused_ || epoch != epoch_) return false;
    if (auto it = live_.find(id); it != live_.end()) {
      it->second.ttl = ttl;
      it->second.next = absl::Now() + ttl / 3;
      it->second.expires = Expiry(sent, ttl);
    }
  }
  return true;
}

}  // namespace shmbroker::client
