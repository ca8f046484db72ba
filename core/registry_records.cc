#include "core/registry_records.h"

namespace shmbroker::registry_internal {

BufferInfo BufferRecord::Info(Handle handle) const {
  BufferInfo info;
  info.handle = handle;
  info.size = size;
  info.charged_bytes = charged_bytes;
  info.backing = backing;
  info.kind = kind;
  info.arena_id = arena_id;
  info.offset = offset;
  info.owner = owner;
  info.created = created();
  info.holders = holders;
  info.sealed = sealed;
  if (extras != nullptr) {
    info.name = extras->name;
    info.shm_name = extras->shm_name;
    info.share = extras->share;
  }
  return info;
}

void BufferRecord::Assign(const BufferInfo& info) {
  size = info.size;
  charged_bytes = info.charged_bytes;
  backing = info.backing;
  kind = info.kind;
  arena_id = static_cast<uint32_t>(info.arena_id);
  offset = info.offset;
  owner = info.owner;
  created_unix_nanos = absl::ToUnixNanos(info.created);
  holders = info.holders;
  sealed = info.sealed;
  if (!info.name.empty() || !info.shm_name.empty() || !info.share.empty()) {
    BufferExtras& more = MutableExtras();
    more.name = info.name;
    more.shm_name = info.shm_name;
    more.share = info.share;
  }
}

}  // namespace shmbroker::registry_internal
