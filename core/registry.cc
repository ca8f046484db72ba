#include "core/registry.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/buffer_name.h"

namespace shmbroker {
namespace {

uint64_t PageSize() {
  static const uint64_t kPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return kPage;
}

absl::Status ClientClosedError(ClientId client) {
  return absl::FailedPreconditionError(
      absl::StrFormat("client connection %d is closed", client));
}

RegistryObserver* NoOpObserver() {
  static RegistryObserver kNoOp;
  return &kNoOp;
}

}  // namespace

const char* ReclaimReasonName(ReclaimReason reason) {
  switch (reason) {
    case ReclaimReason::kRelease:
      return "release";
    case ReclaimReason::kClientClosed:
      return "client_closed";
    case ReclaimReason::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

std::string BufferRef::ToString() const {
  if (handle != 0) return absl::StrCat("handle ", handle);
  return absl::StrCat("name \"", name, "\"");
}

Registry::Registry(RegistryOptions options, const Clock* clock,
                   RegistryObserver* observer)
    : options_(std::move(options)),
      clock_(clock),
      observer_(observer != nullptr ? observer : NoOpObserver()) {}

absl::StatusOr<ClientId> Registry::OpenClient(const Identity& identity) {
  absl::MutexLock lock(&mu_);
  auto per_uid = clients_per_uid_.find(identity.uid);
  const uint32_t open = per_uid == clients_per_uid_.end() ? 0 : per_uid->second;
  if (open >= options_.max_clients_per_uid) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("uid %d already has %d client connections "
                        "(--max_clients_per_uid=%d)",
                        identity.uid, open, options_.max_clients_per_uid));
  }
  ++clients_per_uid_[identity.uid];
  ClientId id = next_client_++;
  clients_[id].identity = identity;
  return id;
}

CloseResult Registry::CloseClient(ClientId client, ReclaimReason reason) {
  CloseResult result;
  std::vector<std::shared_ptr<MemoryObject>> doomed;
  {
    absl::MutexLock lock(&mu_);
    auto it = clients_.find(client);
    if (it == clients_.end()) return result;
    ClientRecord& record = it->second;
    // Copy: DropHoldsLocked edits record.holds.
    std::vector<std::pair<Handle, uint32_t>> holds(record.holds.begin(),
                                                   record.holds.end());
    for (const auto& [handle, count] : holds) {
      DropHoldsLocked(record, handle, count, doomed, reason, &result);
    }
    uid_t uid = record.identity.uid;
    clients_.erase(it);
    if (--clients_per_uid_[uid] == 0) clients_per_uid_.erase(uid);
  }
  return result;  // `doomed` memory objects close here, outside the lock
}

absl::StatusOr<Grant> Registry::Allocate(ClientId client,
                                         const AllocateSpec& spec) {
  absl::StatusOr<Grant> grant = DoAllocate(client, spec);
  observer_->OnAllocate(grant.status().code());
  return grant;
}

absl::StatusOr<Grant> Registry::DoAllocate(ClientId client,
                                           const AllocateSpec& spec) {
  if (spec.size == 0) {
    return absl::InvalidArgumentError("bad size: 0 (must be at least 1 byte)");
  }
  if (spec.size > options_.capacity_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "over capacity: %d bytes requested, capacity is %d bytes "
        "(--capacity)",
        spec.size, options_.capacity_bytes));
  }
  if (!spec.name.empty()) {
    if (absl::Status s = ValidateBufferName(spec.name); !s.ok()) return s;
  }
  if (absl::Status s = ValidateShareRules(spec.share); !s.ok()) return s;
  const uint64_t charged =
      (spec.size + PageSize() - 1) / PageSize() * PageSize();

  // Reserve the handle, name and bytes, then create the memory unlocked.
  MemorySpec memory_spec;
  Handle handle = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = clients_.find(client);
    if (it == clients_.end()) return ClientClosedError(client);
    if (absl::Status s = CheckHoldLimitLocked(it->second); !s.ok()) return s;
    if (buffers_.size() >= options_.max_buffers) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "too many buffers: %d live (--max_buffers)", buffers_.size()));
    }
    if (!spec.name.empty()) {
      if (auto taken = names_.find(spec.name); taken != names_.end()) {
        return absl::AlreadyExistsError(absl::StrFormat(
            "name \"%s\" is taken (buffer %d)", spec.name, taken->second));
      }
    }
    if (allocated_bytes_ + charged > options_.capacity_bytes) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "over capacity: %d bytes requested, %d of %d bytes in use "
          "(--capacity)",
          charged, allocated_bytes_, options_.capacity_bytes));
    }
    // The hold is counted against the client's limit from now on, so that
    // concurrent Allocates cannot all pass the check.
    ++it->second.hold_count;
    handle = next_handle_++;
    BufferRecord& record = buffers_[handle];
    record.info.handle = handle;
    record.info.name = spec.name;
    record.info.size = spec.size;
    record.info.charged_bytes = charged;
    record.info.backing = spec.backing;
    record.info.owner = it->second.identity;
    record.info.share = spec.share;
    record.info.created = clock_->Now();
    if (spec.backing == Backing::kPosix) {
      record.info.shm_name = absl::StrCat(options_.shm_prefix, ".", handle);
    }
    if (!spec.name.empty()) names_[spec.name] = handle;
    allocated_bytes_ += charged;
    observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);

    memory_spec.backing = spec.backing;
    memory_spec.size = spec.size;
    memory_spec.shm_name = record.info.shm_name;
    memory_spec.owner_uid = record.info.owner.uid;
    memory_spec.owner_gid = record.info.owner.gid;
    memory_spec.label = absl::StrCat("shmbroker-", handle);
  }

  absl::StatusOr<std::unique_ptr<MemoryObject>> created =
      CreateMemoryObject(memory_spec);
  std::shared_ptr<MemoryObject> memory;  // destroyed after unlock on failure
  if (created.ok()) memory = std::move(*created);

  absl::MutexLock lock(&mu_);
  // The pending record is invisible to Attach/Describe/List and to other
  // clients' releases, so it is still here.
  auto client_it = clients_.find(client);
  if (!created.ok() || client_it == clients_.end()) {
    EraseBufferLocked(handle);
    if (client_it != clients_.end()) --client_it->second.hold_count;
    if (!created.ok()) return created.status();
    return ClientClosedError(client);
  }
  BufferRecord& record = buffers_.at(handle);
  record.memory = memory;
  record.info.holders = 1;
  ++client_it->second.holds[handle];
  ++hold_count_;
  return Grant{record.info, AccessMode::kReadWrite, std::move(memory), {}};
}

absl::StatusOr<Grant> Registry::Attach(ClientId client, const BufferRef& ref,
                                       AccessRequest request) {
  Grant grant;
  {
    absl::MutexLock lock(&mu_);
    auto it = clients_.find(client);
    if (it == clients_.end()) return ClientClosedError(client);
    absl::StatusOr<Handle> handle = ResolveLocked(ref);
    if (!handle.ok()) return handle.status();
    BufferRecord& record = buffers_.at(*handle);
    BufferInfo& info = record.info;
    absl::StatusOr<AccessMode> mode =
        DecideAccess(it->second.identity, info.owner, info.share, request);
    if (!mode.ok()) return mode.status();
    if (absl::Status s = CheckHoldLimitLocked(it->second); !s.ok()) return s;
    ++info.holders;
    ++it->second.holds[info.handle];
    ++it->second.hold_count;
    ++hold_count_;
    grant.buffer = info;
    grant.mode = *mode;
    grant.memory = record.memory;
  }
  if (grant.mode == AccessMode::kReadOnly) {
    absl::StatusOr<UniqueFd> ro = grant.memory->OpenReadOnly();
    if (!ro.ok()) {
      Release(client, grant.buffer.handle).IgnoreError();
      return ro.status();
    }
    grant.read_only_fd = std::move(*ro);
  }
  return grant;
}

absl::StatusOr<uint32_t> Registry::Release(ClientId client, Handle handle) {
  std::vector<std::shared_ptr<MemoryObject>> doomed;
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client);
  if (it == clients_.end()) return ClientClosedError(client);
  if (!it->second.holds.contains(handle)) {
    auto buffer = buffers_.find(handle);
    if (buffer == buffers_.end() || !buffer->second.memory) {
      return absl::NotFoundError(
          absl::StrFormat("no such buffer: handle %d", handle));
    }
    return absl::PermissionDeniedError(absl::StrFormat(
        "permission denied: this client connection holds no reference to "
        "buffer %d (a hold can be released only by the connection that "
        "took it)",
        handle));
  }
  // `doomed` is declared before `lock`, so reclaimed memory closes unlocked.
  return DropHoldsLocked(it->second, handle, 1, doomed, ReclaimReason::kRelease,
                         nullptr);
}

absl::StatusOr<Handle> Registry::ResolveLocked(const BufferRef& ref) const {
  Handle handle = ref.handle;
  if (handle == 0) {
    if (absl::Status s = ValidateBufferName(ref.name); !s.ok()) return s;
    auto named = names_.find(ref.name);
    if (named == names_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no such buffer: ", ref.ToString()));
    }
    handle = named->second;
  }
  auto it = buffers_.find(handle);
  if (it == buffers_.end() || !it->second.memory) {
    return absl::NotFoundError(
        absl::StrCat("no such buffer: ", ref.ToString()));
  }
  return handle;
}

absl::Status Registry::CheckHoldLimitLocked(const ClientRecord& client) const {
  if (client.hold_count >= options_.max_holds_per_client) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "client connection has %d holds (--max_holds_per_client=%d)",
        client.hold_count, options_.max_holds_per_client));
  }
  return absl::OkStatus();
}

uint32_t Registry::DropHoldsLocked(
    ClientRecord& client, Handle handle, uint32_t count,
    std::vector<std::shared_ptr<MemoryObject>>& doomed, ReclaimReason reason,
    CloseResult* result) {
  observer_->OnHoldsDropped(reason, count);
  auto held = client.holds.find(handle);
  held->second -= count;
  if (held->second == 0) client.holds.erase(held);
  client.hold_count -= count;
  hold_count_ -= count;
  BufferRecord& record = buffers_.at(handle);
  record.info.holders -= count;
  if (result != nullptr) result->holds_dropped += count;
  if (record.info.holders > 0) return record.info.holders;
  if (result != nullptr) {
    ++result->buffers_reclaimed;
    result->bytes_reclaimed += record.info.charged_bytes;
  }
  observer_->OnReclaim(reason, record.info.charged_bytes);
  doomed.push_back(std::move(record.memory));
  EraseBufferLocked(handle);
  return 0;
}

void Registry::EraseBufferLocked(Handle handle) {
  auto it = buffers_.find(handle);
  if (it == buffers_.end()) return;
  if (!it->second.info.name.empty()) names_.erase(it->second.info.name);
  allocated_bytes_ -= it->second.info.charged_bytes;
  buffers_.erase(it);
  observer_->OnUsage(allocated_bytes_, options_.capacity_bytes);
}

}  // namespace shmbroker
