#include "core/tenant_quotas.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "core/limit.h"

namespace shmbroker {

namespace {

// Says whose quota it is when the operator gave the uid its own.
const char* Whose(bool own) { return own ? " (its own quota)" : ""; }

}  // namespace

UidQuota TenantQuotas::For(uid_t uid) const {
  auto it = own_.find(uid);
  return it == own_.end() ? defaults_ : it->second;
}

absl::Status TenantQuotas::CheckBuffers(uid_t uid) const {
  const uint64_t max_buffers = For(uid).max_buffers;
  if (max_buffers == 0) return absl::OkStatus();
  const Usage used = usage(uid);
  if (used.buffers >= max_buffers) {
    return LimitReached(
        Limit::kMaxBuffersPerUid,
        absl::StrFormat("over the per-uid quota: uid %d has %d of %d "
                        "buffers%s",
                        uid, used.buffers, max_buffers,
                        Whose(own_.contains(uid))));
  }
  return absl::OkStatus();
}

absl::Status TenantQuotas::CheckBytes(uid_t uid, uint64_t bytes) const {
  const uint64_t max_bytes = For(uid).max_bytes;
  if (max_bytes == 0) return absl::OkStatus();
  const Usage used = usage(uid);
  if (bytes > max_bytes || used.bytes > max_bytes - bytes) {
    return LimitReached(
        Limit::kMaxBytesPerUid,
        absl::StrFormat("over the per-uid quota: %d bytes requested, uid %d "
                        "has %d of %d bytes%s",
                        bytes, uid, used.bytes, max_bytes,
                        Whose(own_.contains(uid))));
  }
  return absl::OkStatus();
}

void TenantQuotas::Charge(uid_t uid, uint64_t bytes, uint64_t buffers) {
  Usage& used = usage_[uid];
  used.bytes += bytes;
  used.buffers += buffers;
}

void TenantQuotas::Credit(uid_t uid, uint64_t bytes, uint64_t buffers) {
  auto it = usage_.find(uid);
  if (it == usage_.end()) return;
  Usage& used = it->second;
  used.bytes -= std::min(used.bytes, bytes);
  used.buffers -= std::min(used.buffers, buffers);
  if (used.bytes == 0 && used.buffers == 0) usage_.erase(it);
}

TenantQuotas::Usage TenantQuotas::usage(uid_t uid) const {
  auto it = usage_.find(uid);
  return it == usage_.end() ? Usage{} : it->second;
}

}  // namespace shmbroker
