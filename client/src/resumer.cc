#include "client/src/resumer.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "client/src/proto_convert.h"
#include "client/src/test_hooks.h"
#include "common/fd_channel_protocol.h"

namespace shmbroker::client {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(20);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);

// What the daemon says before it hangs up on a connection it ended on
// purpose (server/fd_channel.cc): that connection is over, not the daemon.
constexpr const char* kDeliberateHangups[] = {
    fdchannel::kClosedOnPurpose,
    fdchannel::kProtocolError,
};

}  // namespace

Resumer::Resumer(Connection* connection,
                 std::function<void(const ResumeReport&)> on_resumed)
    : connection_(connection),
      on_resumed_(std::move(on_resumed)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { Run(); });
}

Resumer::~Resumer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (call_ctx_ != nullptr) call_ctx_->TryCancel();
  }
  const uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof(one)) < 0) {
    // Cannot happen for an eventfd below its maximum; the thread then
    // notices at its next wake-up.
  }
  thread_.join();
}

uint64_t Resumer::resumes() const {
  absl::MutexLock lock(&mu_);
  return resumes_;
}

bool Resumer::DaemonWentAway(const std::optional<std::string>& text) {
  if (!text.has_value()) return true;  // killed: it said nothing
  for (const char* prefix : kDeliberateHangups) {
    if (absl::StartsWith(*text, prefix)) return false;
  }
  return true;  // e.g. "shmbrokerd is stopping"
}

bool Resumer::AwaitHangup(const FdChannel& channel) {
  for (;;) {
    pollfd fds[2] = {{channel.socket(), POLLRDHUP, 0},
                     {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Sleep(kMaxBackoff) && AwaitHangup(channel);
    }
    if (fds[1].revents != 0) return false;
    if ((fds[0].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0) {
      return true;
    }
  }
}

bool Resumer::Sleep(absl::Duration duration) {
  const absl::Time until = absl::Now() + duration;
  for (;;) {
    const int64_t ms = absl::ToInt64Milliseconds(
        absl::Ceil(until - absl::Now(), absl::Milliseconds(1)));
    if (ms <= 0) return true;
    pollfd p{wake_.get(), POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(ms));
    if (n > 0) return false;
    if (n < 0 && errno != EINTR) return false;
  }
}

void Resumer::Run() {
  std::minstd_rand jitter(
      static_cast<uint32_t>(::getpid()) ^
      static_cast<uint32_t>(absl::ToUnixNanos(absl::Now())));
  for (;;) {
    std::shared_ptr<FdChannel> channel = connection_->fd_channel();
    if (!AwaitHangup(*channel)) return;
    const absl::Time went_away = absl::Now();
    if (!DaemonWentAway(channel->ClosingText())) return;  // the keeper tells
    channel.reset();
    connection_->SetDaemonAway(true);
    const std::string socket = connection_->socket_path();
    connection_->keeper()->Pause(
        [socket, went_away](uint64_t lease, absl::Duration ttl) {
          return absl::UnavailableError(absl::StrFormat(
              "the daemon at %s went away (fd channel closed at %s) and did "
              "not come back within lease %d's TTL of %s",
              socket,
              absl::FormatTime("%Y-%m-%d %H:%M:%E3S %Z", went_away,
                               absl::LocalTimeZone()),
              lease, absl::FormatDuration(ttl)));
        });
    for (absl::Duration backoff = kFirstBackoff;;
         backoff = std::min(backoff * 2, kMaxBackoff)) {
      // 75% to 125% of the backoff, so that the clients of one daemon do
      // not all knock at once.
      const double factor =
          0.75 + 0.5 * std::uniform_real_distribution<double>()(jitter);
      if (!Sleep(backoff * factor)) return;
      absl::StatusOr<ResumeReport> report = TryResume(went_away);
      if (!report.ok()) continue;
      {
        absl::MutexLock lock(&mu_);
        ++resumes_;
      }
      if (on_resumed_) on_resumed_(*report);
      break;
    }
  }
}

grpc::Status Resumer::CallResume(const FdChannel& channel,
                                 const v1::ResumeRequest& request,
                                 v1::ResumeResponse* response) {
  grpc::ClientContext ctx;
  connection_->PrepareOn(&channel, &ctx);
  // The gRPC channel may still be reconnecting to the new daemon.
  ctx.set_wait_for_ready(true);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return grpc::Status::CANCELLED;
    call_ctx_ = &ctx;
  }
  grpc::Status status = connection_->stub().Resume(&ctx, request, response);
  absl::MutexLock lock(&mu_);
  call_ctx_ = nullptr;
  return status;
}

absl::StatusOr<ResumeReport> Resumer::TryResume(absl::Time went_away) {
  absl::StatusOr<std::unique_ptr<FdChannel>> opened =
      FdChannel::Open(connection_->socket_path(), connection_->timeout());
  if (!opened.ok()) return opened.status();
  std::shared_ptr<FdChannel> channel = std::move(*opened);
  LeaseKeeper& keeper = *connection_->keeper();

  // What is still ours to take back: the kept leases and the Buffers under
  // them (a lease given up meanwhile is not resumed).
  v1::ResumeRequest request;
  const std::vector<uint64_t> leases = keeper.Kept();
  const absl::flat_hash_set<uint64_t> kept(leases.begin(), leases.end());
  for (uint64_t id : leases) request.add_lease_ids(id);
  const absl::Time deadline = absl::Now() + connection_->timeout();
  absl::flat_hash_set<uint64_t> presented;
  for (const HoldTable::Hold& hold : connection_->holds().Snapshot(
           [&](uint64_t lease) { return kept.contains(lease); })) {
    if (absl::Status s =
            channel->Present(hold.handle, hold.lease, hold.fd.get(), deadline);
        !s.ok()) {
      return s;  // closing `channel` ends that connection in the daemon
    }
    if (presented.insert(hold.handle).second) {
      request.add_handles(hold.handle);
    }
  }

  PausePoint("resume_presented");
  v1::ResumeResponse response;
  const grpc::Status status = CallResume(*channel, request, &response);
  if (status.ok()) PausePoint("resume_reply");
  ResumeReport report;
  report.went_away = went_away;
  std::vector<LeaseKeeper::Adopted> adopted;
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // A daemon that cannot resume: it has none of our leases.
    for (uint64_t id : leases) {
      report.leases_lost.emplace_back(
          id, absl::UnavailableError(absl::StrFormat(
                  "the daemon at %s restarted and cannot resume lease %d "
                  "(it does not implement Resume)",
                  connection_->socket_path(), id)));
    }
  } else if (!status.ok()) {
    return connection_->ToStatus(status);
  } else {
    absl::flat_hash_map<uint64_t, const v1::ResumedLease*> answers;
    for (const v1::ResumedLease& lease : response.leases()) {
      answers[lease.lease_id()] = &lease;
    }
    for (uint64_t id : leases) {
      auto it = answers.find(id);
      if (it == answers.end()) {
        report.leases_lost.emplace_back(
            id, absl::InternalError(absl::StrFormat(
                    "the restarted daemon did not answer for lease %d", id)));
      } else if (it->second->error_code() != 0) {
        report.leases_lost.emplace_back(
            id, absl::Status(
                    static_cast<absl::StatusCode>(it->second->error_code()),
                    it->second->error_message()));
      } else {
        const v1::Lease& lease = it->second->lease();
        adopted.push_back(LeaseKeeper::Adopted{id, FromProto(lease.ttl()),
                                               FromProto(lease.granted_ttl())});
        report.leases_adopted.push_back(id);
      }
    }
    for (const v1::ResumedBuffer& buffer : response.buffers()) {
      if (buffer.error_code() == 0) {
        report.buffers_adopted.push_back(buffer.handle());
      } else {
        report.buffers_refused.emplace_back(
            buffer.handle(),
            absl::Status(static_cast<absl::StatusCode>(buffer.error_code()),
                         buffer.error_message()));
      }
    }
  }

  // From here on every call uses the new connection.
  connection_->SwapFdChannel(channel);
  const std::vector<uint64_t> given_up =
      keeper.Resume(adopted, report.leases_lost);
  // After the losses: a daemon without our books may reuse a lost id.
  keeper.Track(channel->hello().default_lease, absl::ZeroDuration());
  for (uint64_t id : given_up) {
    // Its TTL ran out here while the daemon adopted it: nobody would renew
    // it, so end it rather than let its holds linger.
    v1::RevokeLeaseRequest revoke;
    revoke.set_lease_id(id);
    connection_->Call(&v1::Broker::Stub::RevokeLease, revoke)
        .status()
        .IgnoreError();
  }
  const absl::flat_hash_set<uint64_t> resumed(report.leases_adopted.begin(),
                                              report.leases_adopted.end());
  for (const fdchannel::Release& release : connection_->TakePendingReleases()) {
    if (release.lease == 0 || resumed.contains(release.lease)) {
      connection_->ReleaseAsync(release.handle, release.lease);
    }
  }
  report.resumed = absl::Now();
  return report;
}

}  // namespace shmbroker::client
