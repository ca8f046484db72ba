// Registry: the books (core/books.h). Each change to what a restarted
// daemon needs goes to the sink as it happens, under the mutex, so the
// journal's order is the order of the changes; when the journal has grown
// enough, a snapshot of the live books replaces it.
#include "core/registry.h"

namespace shmbroker {
namespace {

BookedLease ToBooked(const LeaseInfo& info) {
  BookedLease out;
  out.id = info.id;
  out.owner = info.owner;
  out.detached = info.detached;
  out.connection_default = info.connection_default;
  out.ttl = info.granted_ttl;
  out.deadline = info.deadline;
  return out;
}

}  // namespace

void Registry::SetBookSink(BookSink* sink) {
  Locked lock(this);
  books_ = sink;
}

void Registry::StopBookingForRestart() {
  Locked lock(this);
  books_ = nullptr;
  for (const auto& [handle, record] : buffers_) {
    if (record.memory != nullptr) record.memory->KeepName();
  }
}

Books Registry::SnapshotBooks() const {
  Locked lock(this);
  return SnapshotBooksLocked();
}

Books Registry::SnapshotBooksLocked() const {
  Books books;
  for (const auto& [handle, record] : buffers_) {
    // A buffer still being created is booked when it is finished.
    if (record.memory == nullptr && record.restored == nullptr) continue;
    BookedBuffer& booked = books.buffers[handle];
    booked.info = record.info;
    booked.memory = record.memory != nullptr ? record.memory->identity()
                                             : record.restored->expected;
  }
  auto book_lease = [&](LeaseId id, const LeaseRecord& lease) {
    books.leases[id] = ToBooked(lease.info);
    for (const auto& [handle, count] : lease.holds) {
      if (books.buffers.contains(handle)) books.holds[{id, handle}] = count;
    }
  };
  for (const auto& [id, lease] : leases_.all()) book_lease(id, lease);
  // An ended lease is booked gone once its last hold is dropped: until
  // then its holds are real, and the journal still records each drop.
  for (const auto& [id, draining] : draining_) book_lease(id, draining.record);
  books.last_handle = next_handle_ - 1;
  books.last_lease = next_lease_ - 1;
  books.last_arena = pool_ != nullptr ? pool_->last_arena_id() : 0;
  books.last_arena = std::max(books.last_arena, booked_last_arena_);
  books.revision = watch_hub_.revision();
  return books;
}

void Registry::MaybeRewriteBooksLocked() {
  if (books_->WantsRewrite()) books_->Rewrite(SnapshotBooksLocked());
}

void Registry::BookBufferLocked(const BufferRecord& record) {
  if (books_ == nullptr) return;
  BookedBuffer booked;
  booked.info = record.info;
  booked.memory = record.memory != nullptr     ? record.memory->identity()
                  : record.restored != nullptr ? record.restored->expected
                                               : MemoryIdentity{};
  books_->PutBuffer(booked, watch_hub_.revision());
  MaybeRewriteBooksLocked();
}

void Registry::BookBufferGoneLocked(Handle handle) {
  if (books_ == nullptr) return;
  books_->EraseBuffer(handle, watch_hub_.revision());
  MaybeRewriteBooksLocked();
}

void Registry::BookLeaseLocked(const LeaseInfo& lease) {
  if (books_ == nullptr) return;
  books_->PutLease(ToBooked(lease));
  MaybeRewriteBooksLocked();
}

void Registry::BookLeaseGoneLocked(LeaseId lease) {
  if (books_ == nullptr) return;
  books_->EraseLease(lease);
  MaybeRewriteBooksLocked();
}

void Registry::BookHoldsLocked(const LeaseRecord& lease, Handle handle) {
  if (books_ == nullptr) return;
  auto held = lease.holds.find(handle);
  books_->PutHolds(lease.info.id, handle,
                   held == lease.holds.end() ? 0 : held->second);
  MaybeRewriteBooksLocked();
}

void Registry::BookArenaLocked(uint64_t arena_id) {
  if (books_ == nullptr || arena_id <= booked_last_arena_) return;
  booked_last_arena_ = arena_id;
  books_->PutLastArena(arena_id);
  MaybeRewriteBooksLocked();
}

}  // namespace shmbroker
