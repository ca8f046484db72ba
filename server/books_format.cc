#include "server/books_format.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/buffer_name.h"

namespace shmbroker::books_format {
namespace {

namespace pb = books::v1;

uint32_t Crc(uint32_t crc, const char* data, size_t size) {
  return static_cast<uint32_t>(crc32(crc, reinterpret_cast<const Bytef*>(data),
                                     static_cast<uInt>(size)));
}

void ToProto(const Identity& in, pb::Identity* out) {
  out->set_pid(in.pid);
  out->set_uid(in.uid);
  out->set_gid(in.gid);
}

Identity FromProto(const pb::Identity& in) {
  return {.pid = in.pid(), .uid = in.uid(), .gid = in.gid()};
}

}  // namespace

std::string Header() {
  std::string header(kHeaderSize, '\0');
  std::memcpy(header.data(), kFileMagic, sizeof(kFileMagic));
  PutU32(kVersion, header.data() + 8);
  PutU32(Crc(0, header.data(), 12), header.data() + 12);
  return header;
}

absl::Status CheckHeader(absl::string_view file, uint32_t* version) {
  if (file.size() < kHeaderSize) {
    return absl::DataLossError(absl::StrCat("the file is ", file.size(),
                                            " bytes, shorter than its header"));
  }
  if (std::memcmp(file.data(), kFileMagic, sizeof(kFileMagic)) != 0) {
    return absl::DataLossError("the header's magic is not SHMBOOKS");
  }
  if (GetU32(file.data() + 12) != Crc(0, file.data(), 12)) {
    return absl::DataLossError("the header's crc32 does not match");
  }
  *version = GetU32(file.data() + 8);
  if (*version == 0 || *version > kVersion) {
    return absl::DataLossError(
        absl::StrCat("format version ", *version,
                     " is not one this daemon reads (1 to ", kVersion, ")"));
  }
  return absl::OkStatus();
}

uint32_t RecordCrc(uint32_t length, const char* payload) {
  char length_bytes[4];
  PutU32(length, length_bytes);
  return Crc(Crc(0, length_bytes, 4), payload, length);
}

absl::Status AppendRecord(const pb::Record& record, std::string* out) {
  const size_t length = record.ByteSizeLong();
  if (length > kMaxPayload) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a record of ", length, " bytes is over the limit of ", kMaxPayload));
  }
  const size_t start = out->size();
  out->resize(start + kFrameSize + length);
  char* frame = out->data() + start;
  char* payload = frame + kFrameSize;
  record.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(payload));
  PutU32(kRecordMagic, frame);
  PutU32(static_cast<uint32_t>(length), frame + 4);
  PutU32(RecordCrc(static_cast<uint32_t>(length), payload), frame + 8);
  return absl::OkStatus();
}

void SnapshotRecords(const Books& books,
                     absl::FunctionRef<void(const pb::Record&)> emit) {
  EntityRecords(books, emit);
  IdRecords(books, emit);
}

void EntityRecords(const Books& books,
                   absl::FunctionRef<void(const pb::Record&)> emit) {
  pb::Record record;
  for (const auto& [handle, buffer] : books.buffers) {
    ToProto(buffer, books.revision, record.mutable_put_buffer());
    emit(record);
  }
  for (const auto& [id, lease] : books.leases) {
    ToProto(lease, record.mutable_put_lease());
    emit(record);
  }
  for (const auto& [key, count] : books.holds) {
    pb::PutHolds* holds = record.mutable_put_holds();
    holds->set_lease(key.first);
    holds->set_handle(key.second);
    holds->set_count(count);
    emit(record);
  }
}

void IdRecords(const Books& books,
               absl::FunctionRef<void(const pb::Record&)> emit) {
  pb::Record record;
  record.mutable_put_last_arena()->set_arena_id(books.last_arena);
  emit(record);
  if (books.last_handle != 0 && !books.buffers.contains(books.last_handle)) {
    pb::EraseBuffer* erase = record.mutable_erase_buffer();
    erase->set_handle(books.last_handle);
    erase->set_revision(books.revision);
    emit(record);
  }
  if (books.last_lease != 0 && !books.leases.contains(books.last_lease)) {
    record.mutable_erase_lease()->set_id(books.last_lease);
    emit(record);
  }
}

void ToProto(const BookedBuffer& buffer, uint64_t revision,
             pb::PutBuffer* out) {
  const BufferInfo& info = buffer.info;
  out->set_handle(info.handle);
  out->set_name(info.name);
  out->set_size(info.size);
  out->set_charged_bytes(info.charged_bytes);
  out->set_backing(info.backing == Backing::kPosix ? pb::BACKING_POSIX
                                                   : pb::BACKING_MEMFD);
  out->set_kind(info.kind == BufferKind::kPooled ? pb::BUFFER_KIND_POOLED
                                                 : pb::BUFFER_KIND_DEDICATED);
  out->set_arena_id(info.arena_id);
  out->set_offset(info.offset);
  ToProto(info.owner, out->mutable_owner());
  out->clear_share();  // a reused message keeps its elements for reuse
  for (const ShareRule& rule : info.share) {
    pb::ShareRule* r = out->add_share();
    switch (rule.scope) {
      case ShareRule::Scope::kUid:
        r->set_scope(pb::ShareRule::SCOPE_UID);
        break;
      case ShareRule::Scope::kGid:
        r->set_scope(pb::ShareRule::SCOPE_GID);
        break;
      case ShareRule::Scope::kAll:
        r->set_scope(pb::ShareRule::SCOPE_ALL);
        break;
    }
    r->set_id(rule.id);
    r->set_mode(rule.mode == AccessMode::kReadWrite
                    ? pb::ShareRule::MODE_READ_WRITE
                    : pb::ShareRule::MODE_READ_ONLY);
  }
  out->set_shm_name(info.shm_name);
  out->set_sealed(info.sealed);
  out->set_memory_device(buffer.memory.device);
  out->set_memory_inode(buffer.memory.inode);
  out->set_revision(revision);
}

void ToProto(const BookedLease& lease, pb::PutLease* out) {
  out->set_id(lease.id);
  ToProto(lease.owner, out->mutable_owner());
  out->set_detached(lease.detached);
  out->set_connection_default(lease.connection_default);
  out->set_ttl_nanos(absl::ToInt64Nanoseconds(lease.ttl));
  out->set_deadline_unix_nanos(absl::ToUnixNanos(lease.deadline));
}

absl::Status FromProto(const pb::PutBuffer& in, BookedBuffer* out) {
  if (in.handle() == 0) return absl::InvalidArgumentError("buffer handle 0");
  BufferInfo& info = out->info;
  info = BufferInfo();
  info.handle = in.handle();
  switch (in.backing()) {
    case pb::BACKING_MEMFD:
      info.backing = Backing::kMemfd;
      break;
    case pb::BACKING_POSIX:
      info.backing = Backing::kPosix;
      if (in.shm_name().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("POSIX buffer ", in.handle(), " has no shm name"));
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "buffer ", in.handle(), " has unknown backing ", in.backing()));
  }
  switch (in.kind()) {
    case pb::BUFFER_KIND_DEDICATED:
      info.kind = BufferKind::kDedicated;
      break;
    case pb::BUFFER_KIND_POOLED:
      info.kind = BufferKind::kPooled;
      if (in.arena_id() == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("pooled buffer ", in.handle(), " has no arena"));
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "buffer ", in.handle(), " has unknown kind ", in.kind()));
  }
  if (in.share_size() > static_cast<int>(kMaxShareRules)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "buffer ", in.handle(), " has ", in.share_size(), " share rules"));
  }
  for (const pb::ShareRule& r : in.share()) {
    ShareRule rule;
    switch (r.scope()) {
      case pb::ShareRule::SCOPE_UID:
        rule.scope = ShareRule::Scope::kUid;
        break;
      case pb::ShareRule::SCOPE_GID:
        rule.scope = ShareRule::Scope::kGid;
        break;
      case pb::ShareRule::SCOPE_ALL:
        rule.scope = ShareRule::Scope::kAll;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "buffer ", in.handle(), " has a share rule of unknown scope"));
    }
    switch (r.mode()) {
      case pb::ShareRule::MODE_READ_ONLY:
        rule.mode = AccessMode::kReadOnly;
        break;
      case pb::ShareRule::MODE_READ_WRITE:
        rule.mode = AccessMode::kReadWrite;
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "buffer ", in.handle(), " has a share rule of unknown mode"));
    }
    rule.id = r.id();
    info.share.push_back(rule);
  }
  if (absl::Status s = ValidateShareRules(info.share); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer ", in.handle(), ": ", s.message()));
  }
  if (!in.name().empty()) {
    if (absl::Status s = ValidateBufferName(in.name()); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("buffer ", in.handle(), ": ", s.message()));
    }
  }
  info.name = in.name();
  info.size = in.size();
  info.charged_bytes = in.charged_bytes();
  info.arena_id = in.arena_id();
  info.offset = in.offset();
  info.owner = FromProto(in.owner());
  info.shm_name = in.shm_name();
  info.sealed = in.sealed();
  out->memory = {.device = in.memory_device(), .inode = in.memory_inode()};
  return absl::OkStatus();
}

absl::Status FromProto(const pb::PutLease& in, BookedLease* out) {
  if (in.id() == 0) return absl::InvalidArgumentError("lease id 0");
  if (in.ttl_nanos() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease ", in.id(), " has ttl ", in.ttl_nanos(), "ns"));
  }
  *out = BookedLease();
  out->id = in.id();
  out->owner = FromProto(in.owner());
  out->detached = in.detached();
  out->connection_default = in.connection_default();
  out->ttl = absl::Nanoseconds(in.ttl_nanos());
  out->deadline = absl::FromUnixNanos(in.deadline_unix_nanos());
  return absl::OkStatus();
}

}  // namespace shmbroker::books_format
