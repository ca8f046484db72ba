// TenantQuotas: what each owner uid's buffers are charged against its quota
// (RegistryOptions::max_bytes_per_uid and max_buffers_per_uid), so that one
// tenant cannot take the whole capacity or every buffer from the others.
//
// A buffer is charged to its owner's uid (whoever attaches it) from the
// moment it is reserved until it is erased, however it goes: released,
// expired, its connection closed, or its allocation failed. The Registry
// keeps one of these under its own mutex; it is not thread-safe itself.
// Only uids with something charged have an entry, so its size is bounded
// by the live buffers.
//
// Every uid has the default quotas, but for the uids an operator gave their
// own (--tenant_limits, re-read on SIGHUP: SetOwn). Changing a quota never
// takes anything back: a uid above its new quota keeps its buffers and is
// refused more until it is below it.
#ifndef SHMBROKER_CORE_TENANT_QUOTAS_H_
#define SHMBROKER_CORE_TENANT_QUOTAS_H_

#include <sys/types.h>

#include <cstdint>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"

namespace shmbroker {

// One uid's own quotas, in place of the defaults. 0: no limit of that kind.
struct UidQuota {
  uint64_t max_bytes = 0;
  uint64_t max_buffers = 0;
};
using OwnQuotas = absl::flat_hash_map<uid_t, UidQuota>;

class TenantQuotas {
 public:
  struct Usage {
    uint64_t bytes = 0;
    uint64_t buffers = 0;
  };

  // Every uid's quotas, but for those given their own.
  explicit TenantQuotas(UidQuota defaults) : defaults_(defaults) {}

  // Gives the uids in `own` their own quotas, in place of any given before.
  void SetOwn(OwnQuotas own) { own_ = std::move(own); }
  // `uid`'s quotas: its own, or the defaults.
  UidQuota For(uid_t uid) const;

  // OK when one more buffer of `bytes` fits `uid`'s quotas; else
  // RESOURCE_EXHAUSTED carrying Limit::kMaxBuffersPerUid or
  // kMaxBytesPerUid, with the uid's usage in the message. Buffers are
  // checked first.
  absl::Status CheckBuffers(uid_t uid) const;
  absl::Status CheckBytes(uid_t uid, uint64_t bytes) const;

  void Charge(uid_t uid, uint64_t bytes, uint64_t buffers);
  // Gives back what Charge took; never more.
  void Credit(uid_t uid, uint64_t bytes, uint64_t buffers);

  Usage usage(uid_t uid) const;
  // Uids with something charged.
  size_t tenants() const { return usage_.size(); }

 private:
  const UidQuota defaults_;
  OwnQuotas own_;
  absl::flat_hash_map<uid_t, Usage> usage_;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_TENANT_QUOTAS_H_
