// BooksRecorder: a BookSink (core/books.h) that keeps the books in memory,
// applying each change as replaying the journal would, and a rewrite under
// way as the journal makes one (every change goes to it too), so that a
// test can compare what was booked with the Registry's own books. Changes
// are held back until Flush, as the journal holds them, so a Registry call
// that returns without flushing leaves them out. Shared by
// registry_restore_test.cc and the registry_ops fuzz target. Not
// thread-safe: the Registry calls it under its lock.
#ifndef SHMBROKER_TESTS_CORE_BOOKS_RECORDER_H_
#define SHMBROKER_TESTS_CORE_BOOKS_RECORDER_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "core/books.h"

namespace shmbroker::testing {

class BooksRecorder : public BookSink {
 public:
  void PutBuffer(const BookedBuffer& buffer, uint64_t revision) override {
    Apply([=](Books& b) {
      b.buffers[buffer.info.handle] = buffer;
      b.last_handle = std::max(b.last_handle, buffer.info.handle);
      b.revision = std::max(b.revision, revision);
    });
  }
  void EraseBuffer(Handle handle, uint64_t revision) override {
    Apply([=](Books& b) {
      b.buffers.erase(handle);
      b.revision = std::max(b.revision, revision);
    });
  }
  void PutLease(const BookedLease& lease) override {
    Apply([=](Books& b) {
      b.leases[lease.id] = lease;
      b.last_lease = std::max(b.last_lease, lease.id);
    });
  }
  void EraseLease(LeaseId lease) override {
    Apply([=](Books& b) { b.leases.erase(lease); });
  }
  void PutHolds(LeaseId lease, Handle handle, uint32_t count) override {
    Apply([=](Books& b) {
      if (count == 0) {
        b.holds.erase({lease, handle});
      } else {
        b.holds[{lease, handle}] = count;
      }
    });
  }
  void PutLastArena(uint64_t arena_id) override {
    Apply([=](Books& b) { b.last_arena = std::max(b.last_arena, arena_id); });
  }
  void Flush() override {
    for (const auto& change : pending_) {
      change(books);
      if (next.has_value()) change(*next);
    }
    pending_.clear();
  }
  bool WantsRewrite() const override { return want_rewrite; }
  bool BeginRewrite(const Books& ids) override {
    Flush();
    next.emplace();
    next->last_handle = ids.last_handle;
    next->last_lease = ids.last_lease;
    next->last_arena = ids.last_arena;
    next->revision = ids.revision;
    want_rewrite = false;
    return true;
  }
  bool AddToRewrite(const Books& entities) override {
    Flush();
    ++steps;
    largest_step = std::max(largest_step, entities.buffers.size() +
                                              entities.leases.size() +
                                              entities.holds.size());
    for (const auto& [handle, buffer] : entities.buffers) {
      next->buffers[handle] = buffer;
    }
    for (const auto& [id, lease] : entities.leases) next->leases[id] = lease;
    for (const auto& [key, count] : entities.holds) next->holds[key] = count;
    return true;
  }
  bool FinishRewrite() override {
    Flush();
    books = *std::move(next);
    next.reset();
    ++rewrites;
    return true;
  }

  Books books;
  std::optional<Books> next;  // the rewrite under way
  bool want_rewrite = false;
  int rewrites = 0;
  int steps = 0;            // AddToRewrite calls
  size_t largest_step = 0;  // the most entities one of them added

 private:
  void Apply(std::function<void(Books&)> change) {
    pending_.push_back(std::move(change));
  }

  std::vector<std::function<void(Books&)>> pending_;  // until Flush
};

// Whether `a` and `b` book the same entities: the same buffers (by handle),
// leases (by id) and holds. The last ids are left out: a handle or lease
// id handed out to something never booked (an Allocate that failed) raises
// the Registry's own.
inline bool SameEntities(const Books& a, const Books& b) {
  auto same_keys = [](const auto& x, const auto& y) {
    return std::equal(
        x.begin(), x.end(), y.begin(), y.end(),
        [](const auto& p, const auto& q) { return p.first == q.first; });
  };
  return same_keys(a.buffers, b.buffers) && same_keys(a.leases, b.leases) &&
         a.holds == b.holds;
}

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_CORE_BOOKS_RECORDER_H_
