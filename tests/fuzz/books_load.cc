// Fuzzes the books journal's loader (server/books_journal_load.cc) with
// arbitrary files: it must never crash, and what it returns must be books a
// daemon can trust (every hold's lease and buffer booked, counts above 0,
// every buffer held, the last ids at least every id booked), whatever the
// file says. Then the round trip: a snapshot of those books, framed as the
// daemon's Rewrite frames it, loads back to the same books with no problem.
//
// Input: a mode byte, then
//   even mode: the whole journal file (header and records);
//   odd mode:  payloads, each a length byte and that many bytes, that the
//              target frames (valid header, magic, length, crc) into the
//              file, so that mutated records reach the replay instead of
//              failing their crc.
// The seed corpus (tests/fuzz/corpus/books_load) holds journals the daemon
// wrote, in both modes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "server/books_format.h"
#include "server/books_journal.h"
#include "tests/fuzz/fuzz_check.h"

namespace shmbroker::fuzz {
namespace {

void CheckTrustworthy(const Books& books, const LoadReport& report) {
  FUZZ_CHECK(report.problems.size() <= LoadReport::kMaxProblems);
  absl::flat_hash_set<Handle> held;
  for (const auto& [key, count] : books.holds) {
    FUZZ_CHECK(count > 0);
    FUZZ_CHECK(books.leases.contains(key.first));
    FUZZ_CHECK(books.buffers.contains(key.second));
    held.insert(key.second);
  }
  for (const auto& [handle, buffer] : books.buffers) {
    FUZZ_CHECK(handle != 0 && buffer.info.handle == handle);
    FUZZ_CHECK(books.last_handle >= handle);
    FUZZ_CHECK(held.contains(handle));
    if (buffer.info.kind == BufferKind::kPooled) {
      FUZZ_CHECK(buffer.info.arena_id != 0);
      FUZZ_CHECK(books.last_arena >= buffer.info.arena_id);
    }
    FUZZ_CHECK(buffer.info.share.size() <= kMaxShareRules);
  }
  for (const auto& [id, lease] : books.leases) {
    FUZZ_CHECK(id != 0 && lease.id == id);
    FUZZ_CHECK(books.last_lease >= id);
    FUZZ_CHECK(lease.ttl > absl::ZeroDuration());
  }
}

bool SameBooks(const Books& a, const Books& b) {
  if (a.buffers.size() != b.buffers.size() ||
      a.leases.size() != b.leases.size() || a.holds != b.holds ||
      a.last_handle != b.last_handle || a.last_lease != b.last_lease ||
      a.last_arena != b.last_arena) {
    return false;
  }
  for (auto i = a.buffers.begin(), j = b.buffers.begin(); i != a.buffers.end();
       ++i, ++j) {
    const BufferInfo& x = i->second.info;
    const BufferInfo& y = j->second.info;
    if (i->first != j->first || x.handle != y.handle || x.name != y.name ||
        x.size != y.size || x.charged_bytes != y.charged_bytes ||
        x.backing != y.backing || x.kind != y.kind ||
        x.arena_id != y.arena_id || x.offset != y.offset ||
        !(x.owner == y.owner) || x.share != y.share ||
        x.shm_name != y.shm_name || x.sealed != y.sealed ||
        !(i->second.memory == j->second.memory)) {
      return false;
    }
  }
  for (auto i = a.leases.begin(), j = b.leases.begin(); i != a.leases.end();
       ++i, ++j) {
    const BookedLease& x = i->second;
    const BookedLease& y = j->second;
    if (i->first != j->first || x.id != y.id || !(x.owner == y.owner) ||
        x.detached != y.detached ||
        x.connection_default != y.connection_default || x.ttl != y.ttl ||
        x.deadline != y.deadline) {
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace shmbroker::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmbroker;
  if (size == 0) return 0;
  absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string framed;
  absl::string_view file = input;
  if (data[0] % 2 == 1) {
    framed = books_format::Header();
    while (!input.empty()) {
      const size_t length =
          std::min<size_t>(static_cast<uint8_t>(input[0]), input.size() - 1);
      const absl::string_view payload = input.substr(1, length);
      input.remove_prefix(1 + length);
      char frame[books_format::kFrameSize];
      books_format::PutU32(books_format::kRecordMagic, frame);
      books_format::PutU32(static_cast<uint32_t>(length), frame + 4);
      books_format::PutU32(books_format::RecordCrc(
                               static_cast<uint32_t>(length), payload.data()),
                           frame + 8);
      framed.append(frame, sizeof(frame));
      framed.append(payload.data(), payload.size());
    }
    file = framed;
  }
  LoadReport report;
  const Books books = BooksJournal::LoadFromBytes(file, &report);
  fuzz::CheckTrustworthy(books, report);

  std::string snapshot = books_format::Header();
  books_format::SnapshotRecords(books, [&](const books::v1::Record& record) {
    FUZZ_CHECK(books_format::AppendRecord(record, &snapshot).ok());
  });
  LoadReport again;
  const Books reloaded = BooksJournal::LoadFromBytes(snapshot, &again);
  FUZZ_CHECK(again.problems.empty());
  FUZZ_CHECK(again.skipped == 0 && again.dropped == 0);
  FUZZ_CHECK(fuzz::SameBooks(books, reloaded));
  // The revision survives whenever a buffer or handle carries it.
  FUZZ_CHECK(books.last_handle == 0 || reloaded.revision == books.revision);
  return 0;
}
