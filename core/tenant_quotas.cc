#include "core/tenant_quotas.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "core/limit.h"

namespace shmbroker {

absl::Status TenantQuotas::CheckBuffers(uid_t uid) const {
  if (max_buffers_ == 0) return absl::OkStatus();
  const Usage used = usage(uid);
  if (used.buffers >= max_buffers_) {
    return LimitReached(
        Limit::kMaxBuffersPerUid,
        absl::StrFormat("over the per-uid quota: uid %d has %d buffers, "
                        "the most allowed",
                        uid, used.buffers));
  }
  return absl::OkStatus();
}

absl::Status TenantQuotas::CheckBytes(uid_t uid, uint64_t bytes) const {
  if (max_bytes_ == 0) return absl::OkStatus();
  const Usage used = usage(uid);
  if (bytes > max_bytes_ || used.bytes > max_bytes_ - bytes) {
    return LimitReached(
        Limit::kMaxBytesPerUid,
        absl::StrFormat("over the per-uid quota: %d bytes requested, uid %d "
                        "has %d of %d bytes",
                        bytes, uid, used.bytes, max_bytes_));
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
