// LeaseKeeper: keeps a connection's leases alive. One background thread
// renews each tracked lease at about a third of its TTL over one KeepAlive
// stream, opens a new stream when one breaks (backing off up to a second),
// and reports a lease the daemon says is gone (expired, revoked, or its
// connection closed) through the loss callback, once, then stops renewing
// it. Every loss is reported on the keeper's thread.
//
// While the daemon is away (the Resumer noticed its fd channel close) the
// keeper is paused: it renews nothing and believes no answer, since a
// KeepAlive that reached the restarted daemon before Resume would only hear
// NOT_FOUND. Paused, it gives up each lease whose TTL runs out (as last
// known: its last renewal plus its TTL) and reports it lost with the
// reason the Resumer gave. Resume() re-tracks the leases the new daemon
// adopted and reports the others lost. Internal to the client library.
// Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_LEASE_KEEPER_H_
#define SHMBROKER_CLIENT_SRC_LEASE_KEEPER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shmbroker/v1/broker.grpc.pb.h"

namespace shmbroker::client {

using LeaseLossCallback =
    std::function<void(uint64_t lease_id, const absl::Status& why)>;

class LeaseKeeper {
 public:
  // Why a lease was given up while paused, given its id and TTL.
  using GiveUpReason =
      std::function<absl::Status(uint64_t lease_id, absl::Duration ttl)>;
  // A lease the restarted daemon adopted: its time left and granted TTL.
  struct Adopted {
    uint64_t id = 0;
    absl::Duration ttl_left;
    absl::Duration granted_ttl;
  };

  // `stub` must outlive the keeper; `prepare` adds the client connection's
  // token to each stream's context. `on_lost` (may be empty) runs on the
  // keeper's thread. `closing_text` (may be empty) says what the daemon
  // sent when it closed the client connection (e.g. "shmbrokerd closed this
  // client connection: its default lease expired ..."), the reason given
  // for the leases lost with it.
  LeaseKeeper(v1::Broker::Stub* stub,
              std::function<void(grpc::ClientContext*)> prepare,
              LeaseLossCallback on_lost,
              std::function<std::optional<std::string>()> closing_text = {});
  ~LeaseKeeper();  // stops renewing (the leases then run out their TTL)
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Starts renewing `lease_id` (live again if it was lost). A zero `ttl`
  // (not yet known) renews at once and learns it from the answer.
  void Track(uint64_t lease_id, absl::Duration ttl);
  // Stops renewing it (it was revoked on purpose) without reporting a loss.
  void Forget(uint64_t lease_id);
  // OK while the lease is kept (or unknown to the keeper); else why it was
  // lost, e.g. NOT_FOUND "lease 7 expired ...".
  absl::Status LeaseStatus(uint64_t lease_id) const;

  // Stops renewing (cancelling the stream) until Resume; from now on gives
  // up each lease at its TTL with `why`. Pausing again replaces `why`.
  void Pause(GiveUpReason why);
  bool paused() const;
  // The leases it keeps (not lost), ascending.
  std::vector<uint64_t> Kept() const;
  // Renews again: `adopted` with their new TTLs, while each of `refused`
  // is reported lost with the daemon's reason. Returns the adopted leases
  // it had given up meanwhile (their TTL ran out after Kept() was read):
  // the caller should revoke them, as nobody renews them now.
  std::vector<uint64_t> Resume(
      const std::vector<Adopted>& adopted,
      const std::vector<std::pair<uint64_t, absl::Status>>& refused);

 private:
  struct Entry {
    absl::Duration ttl;  // zero: not yet known
    absl::Time next;     // the next renewal
    absl::Time expires;  // as last known: last renewal + TTL
  };
  void Run();
  // Renews the due leases over `stream`, opened in `epoch`; false if the
  // stream broke, or the keeper was paused or stopped.
  bool RenewDue(grpc::ClientReaderWriter<v1::KeepAliveRequest,
                                         v1::KeepAliveResponse>& stream,
                uint64_t epoch);
  // Records the loss (unless the lease was forgotten, or the answer comes
  // from a stream of an earlier epoch) for Report.
  void MarkLost(uint64_t lease_id, const absl::Status& why, uint64_t epoch)
      ABSL_LOCKS_EXCLUDED(mu_);
  void MarkLostLocked(uint64_t lease_id, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Paused: gives up the leases whose TTL ran out; returns the next expiry.
  absl::Time GiveUpExpiredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls on_lost for the losses recorded so far (without mu_).
  void Report() ABSL_LOCKS_EXCLUDED(mu_);

  v1::Broker::Stub* const stub_;
  const std::function<void(grpc::ClientContext*)> prepare_;
  const LeaseLossCallback on_lost_;
  const std::function<std::optional<std::string>()> closing_text_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped by Pause and Resume: answers on an older stream are not trusted.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  GiveUpReason give_up_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Entry> live_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, absl::Status> lost_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, absl::Status>> unreported_
      ABSL_GUARDED_BY(mu_);
  // The open stream's context, so that Pause and the destructor can cancel
  // it.
  grpc::ClientContext* stream_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_LEASE_KEEPER_H_
