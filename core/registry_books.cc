// Registry: the books (core/books.h). Each change to what a restarted
// daemon needs goes to the sink as it happens, under the mutex, so the
// journal's order is the order of the changes. When the journal has grown
// enough, the live books replace it, handed over in steps of
// RegistryOptions::books_rewrite_step entities: one step at the end of each
// hold of the mutex that changed the books (Locked), because a snapshot of
// 100,000 buffers in one go kept every other call waiting 50 to 130 ms. A
// step reads each entity as it is then, with the section's changes whole;
// what changes between steps reaches the new journal as a change, after the
// step that read it or instead of it, so replaying the new journal gives
// the books as they are when it is finished. The step that reaches a lease
// copies the handles it holds, in one pass, to go through them in steps.
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

// A buffer still being created is booked when it is finished.
bool IsBooked(const registry_internal::BufferRecord& record) {
  return record.has_memory || record.restored() != nullptr;
}

// What the books say of a buffer whose memory is `memory`; nullopt while
// it is being created.
std::optional<BookedBuffer> Booked(
    Handle handle, const registry_internal::BufferRecord& record,
    const MemoryObject* memory) {
  if (!IsBooked(record)) return std::nullopt;
  return BookedBuffer{record.Info(handle), memory != nullptr
                                               ? memory->identity()
                                               : record.restored()->expected};
}

}  // namespace

void Registry::SetBookSink(BookSink* sink) {
  Locked lock(this);
  books_ = sink;
  rewrite_.reset();
}

void Registry::StopBookingForRestart() {
  Locked lock(this);
  books_ = nullptr;
  rewrite_.reset();
  for (const auto& [handle, record] : buffers_) {
    if (record.has_memory) MemoryLocked(record)->KeepName();
  }
}

Books Registry::SnapshotBooks() const {
  Locked lock(this);
  return SnapshotBooksLocked();
}

const LeaseRecord* Registry::BookedLeaseLocked(LeaseId id) const {
  if (const LeaseRecord* live = leases_.Find(id)) return live;
  auto draining = draining_.find(id);
  return draining == draining_.end() ? nullptr : &draining->second.record;
}

Books Registry::SnapshotBooksLocked() const {
  Books books;
  for (const auto& [handle, record] : buffers_) {
    if (std::optional<BookedBuffer> booked =
            Booked(handle, record, MemoryLocked(record).get())) {
      books.buffers.emplace(handle, *std::move(booked));
    }
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

void Registry::FlushBooksLocked() const {
  books_changed_ = false;
  if (books_ == nullptr) return;
  books_->Flush();
  if (!rewrite_.has_value()) {
    if (!books_->WantsRewrite()) return;
    Books ids;
    ids.last_handle = next_handle_ - 1;
    ids.last_lease = next_lease_ - 1;
    ids.last_arena = std::max(pool_ != nullptr ? pool_->last_arena_id() : 0,
                              booked_last_arena_);
    ids.revision = watch_hub_.revision();
    if (!books_->BeginRewrite(ids)) return;
    rewrite_.emplace();
  }
  BooksRewrite& r = *rewrite_;
  Books part;
  part.revision = watch_hub_.revision();
  size_t budget = std::max<size_t>(options_.books_rewrite_step, 1);
  if (!r.buffers_done) {
    auto it = buffers_.lower_bound(r.next_handle);
    for (; it != buffers_.end() && budget > 0; ++it, --budget) {
      if (std::optional<BookedBuffer> booked =
              Booked(it->first, it->second, MemoryLocked(it->second).get())) {
        part.buffers.emplace(it->first, *std::move(booked));
      }
    }
    if (it != buffers_.end()) {
      r.next_handle = it->first;
    } else {
      r.buffers_done = true;
      for (const auto& [id, lease] : leases_.all()) r.leases.push_back(id);
      for (const auto& [id, draining] : draining_) r.leases.push_back(id);
    }
  }
  bool done = false;
  while (r.buffers_done && budget > 0) {
    const LeaseRecord* lease = BookedLeaseLocked(r.lease);
    if (lease != nullptr && r.next_hold < r.holds.size()) {
      for (; r.next_hold < r.holds.size() && budget > 0;
           ++r.next_hold, --budget) {
        const Handle handle = r.holds[r.next_hold];
        auto held = lease->holds.find(handle);
        auto buffer = buffers_.find(handle);
        // As in a snapshot: holds of booked buffers only.
        if (held != lease->holds.end() && buffer != buffers_.end() &&
            IsBooked(buffer->second)) {
          part.holds[std::make_pair(r.lease, handle)] = held->second;
        }
      }
      continue;
    }
    if (r.next_lease == r.leases.size()) {
      done = true;
      break;
    }
    r.lease = r.leases[r.next_lease++];
    r.holds.clear();
    r.next_hold = 0;
    --budget;
    lease = BookedLeaseLocked(r.lease);
    if (lease == nullptr) continue;  // ended since: booked gone
    part.leases[r.lease] = ToBooked(lease->info);
    r.holds.reserve(lease->holds.size());
    for (const auto& [handle, count] : lease->holds) r.holds.push_back(handle);
  }
  const bool added = books_->AddToRewrite(part);
  if (!added || done) {
    if (added) books_->FinishRewrite();
    rewrite_.reset();  // finished, or given up (the sink says why)
  }
}

void Registry::BookBufferLocked(Handle handle, const BufferRecord& record) {
  if (books_ == nullptr) return;
  BookedBuffer booked;
  booked.info = record.Info(handle);
  const MemoryObject* memory = MemoryLocked(record).get();
  booked.memory = memory != nullptr              ? memory->identity()
                  : record.restored() != nullptr ? record.restored()->expected
                                                 : MemoryIdentity{};
  books_->PutBuffer(booked, watch_hub_.revision());
  BooksChangedLocked();
}

void Registry::BookBufferGoneLocked(Handle handle) {
  if (books_ == nullptr) return;
  books_->EraseBuffer(handle, watch_hub_.revision());
  BooksChangedLocked();
}

void Registry::BookLeaseLocked(const LeaseInfo& lease) {
  if (books_ == nullptr) return;
  books_->PutLease(ToBooked(lease));
  BooksChangedLocked();
}

void Registry::BookLeaseGoneLocked(LeaseId lease) {
  if (books_ == nullptr) return;
  books_->EraseLease(lease);
  BooksChangedLocked();
}

void Registry::BookHoldsLocked(const LeaseRecord& lease, Handle handle) {
  if (books_ == nullptr) return;
  auto held = lease.holds.find(handle);
  books_->PutHolds(lease.info.id, handle,
                   held == lease.holds.end() ? 0 : held->second);
  BooksChangedLocked();
}

void Registry::BookArenaLocked(uint64_t arena_id) {
  if (books_ == nullptr || arena_id <= booked_last_arena_) return;
  booked_last_arena_ = arena_id;
  books_->PutLastArena(arena_id);
  BooksChangedLocked();
}

}  // namespace shmbroker
