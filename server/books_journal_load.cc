// BooksJournal::Load: replays a books journal (server/books_format.h) into
// Books, trusting nothing it cannot check. No logging here: what was wrong
// goes into the LoadReport for the caller to log (and the fuzz target,
// tests/fuzz/books_load.cc, builds this file without spdlog).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/unique_fd.h"
#include "server/books_format.h"
#include "server/books_journal.h"
#include "shmbroker/books/v1/books.pb.h"

namespace shmbroker {
namespace {

namespace pb = books::v1;
using books_format::GetU32;
using books_format::kFrameSize;
using books_format::kMaxPayload;
using books_format::kRecordMagic;

// Why no whole, valid record starts at `pos`, or "" when one does (its
// payload then in *payload).
const char* RecordAt(absl::string_view file, size_t pos,
                     absl::string_view* payload) {
  if (file.size() - pos < kFrameSize) return "too short for a record";
  const char* frame = file.data() + pos;
  if (GetU32(frame) != kRecordMagic) return "no record magic";
  const uint32_t length = GetU32(frame + 4);
  if (length > kMaxPayload) return "a length over the limit";
  if (file.size() - pos - kFrameSize < length) return "a length past the end";
  if (GetU32(frame + 8) !=
      books_format::RecordCrc(length, frame + kFrameSize)) {
    return "a crc32 that does not match";
  }
  *payload = file.substr(pos + kFrameSize, length);
  return "";
}

// Whether the bytes from `pos` to the end are the start of a record that
// was never finished: the magic (as much of it as there is), and a length
// that fits the limit but not the file.
bool LooksTorn(absl::string_view file, size_t pos) {
  const size_t left = file.size() - pos;
  char magic[4];
  books_format::PutU32(kRecordMagic, magic);
  if (std::memcmp(file.data() + pos, magic, std::min<size_t>(left, 4)) != 0) {
    return false;
  }
  if (left < 8) return true;
  const uint32_t length = GetU32(file.data() + pos + 4);
  return length <= kMaxPayload && left < kFrameSize + length;
}

class Replay {
 public:
  explicit Replay(LoadReport* report) : report_(report) {}

  void Problem(std::string line) {
    if (report_->problems.size() + 1 < LoadReport::kMaxProblems) {
      report_->problems.push_back(std::move(line));
    } else {
      ++unlisted_;
    }
  }

  void Skip(size_t offset, absl::string_view why) {
    ++report_->skipped;
    Problem(absl::StrCat("record at offset ", offset, " skipped: ", why));
  }

  void Apply(const pb::Record& record, size_t offset) {
    switch (record.kind_case()) {
      case pb::Record::kPutBuffer: {
        BookedBuffer buffer;
        if (absl::Status s =
                books_format::FromProto(record.put_buffer(), &buffer);
            !s.ok()) {
          return Skip(offset, s.message());
        }
        const Handle handle = buffer.info.handle;
        books_.last_handle = std::max(books_.last_handle, handle);
        books_.revision =
            std::max(books_.revision, record.put_buffer().revision());
        if (buffer.info.kind == BufferKind::kPooled) {
          books_.last_arena = std::max(books_.last_arena, buffer.info.arena_id);
        }
        books_.buffers[handle] = std::move(buffer);
        break;
      }
      case pb::Record::kEraseBuffer: {
        const pb::EraseBuffer& erase = record.erase_buffer();
        if (erase.handle() == 0) return Skip(offset, "buffer handle 0");
        books_.buffers.erase(erase.handle());
        books_.last_handle = std::max(books_.last_handle, erase.handle());
        books_.revision = std::max(books_.revision, erase.revision());
        break;
      }
      case pb::Record::kPutLease: {
        BookedLease lease;
        if (absl::Status s =
                books_format::FromProto(record.put_lease(), &lease);
            !s.ok()) {
          return Skip(offset, s.message());
        }
        books_.last_lease = std::max(books_.last_lease, lease.id);
        books_.leases[lease.id] = lease;
        break;
      }
      case pb::Record::kEraseLease: {
        const LeaseId id = record.erase_lease().id();
        if (id == 0) return Skip(offset, "lease id 0");
        books_.leases.erase(id);
        books_.last_lease = std::max(books_.last_lease, id);
        break;
      }
      case pb::Record::kPutHolds: {
        const pb::PutHolds& holds = record.put_holds();
        if (holds.lease() == 0 || holds.handle() == 0) {
          return Skip(offset, "holds of lease 0 or handle 0");
        }
        const std::pair<LeaseId, Handle> key(holds.lease(), holds.handle());
        if (holds.count() == 0) {
          books_.holds.erase(key);
        } else {
          books_.holds[key] = holds.count();
        }
        break;
      }
      case pb::Record::kPutLastArena:
        books_.last_arena =
            std::max(books_.last_arena, record.put_last_arena().arena_id());
        break;
      case pb::Record::KIND_NOT_SET:
        return Skip(offset, "a kind of record this daemon does not know");
    }
    ++report_->records;
  }

  // Drops what the records left inconsistent: holds of leases or buffers
  // that are not booked, then buffers nobody holds (nothing would ever
  // reclaim them).
  Books Finish() && {
    uint64_t holds_dropped = 0;
    absl::flat_hash_set<Handle> held;
    for (auto it = books_.holds.begin(); it != books_.holds.end();) {
      const auto [lease, handle] = it->first;
      if (!books_.leases.contains(lease) || !books_.buffers.contains(handle)) {
        it = books_.holds.erase(it);
        ++holds_dropped;
      } else {
        held.insert(handle);
        ++it;
      }
    }
    if (holds_dropped > 0) {
      report_->dropped += holds_dropped;
      Problem(absl::StrCat(holds_dropped,
                           " holds of a lease or buffer not booked dropped"));
    }
    uint64_t buffers_dropped = 0;
    for (auto it = books_.buffers.begin(); it != books_.buffers.end();) {
      if (!held.contains(it->first)) {
        it = books_.buffers.erase(it);
        ++buffers_dropped;
      } else {
        ++it;
      }
    }
    if (buffers_dropped > 0) {
      report_->dropped += buffers_dropped;
      Problem(absl::StrCat(buffers_dropped, " buffers nobody holds dropped"));
    }
    if (unlisted_ > 0) {
      report_->problems.push_back(
          absl::StrCat("and ", unlisted_, " more problems"));
    }
    return std::move(books_);
  }

 private:
  LoadReport* const report_;
  Books books_;
  uint64_t unlisted_ = 0;
};

}  // namespace

Books BooksJournal::LoadFromBytes(absl::string_view file, LoadReport* report) {
  *report = LoadReport();
  Replay replay(report);
  uint32_t version = 0;
  if (absl::Status s = books_format::CheckHeader(file, &version); !s.ok()) {
    replay.Problem(absl::StrCat("the whole file is distrusted: ", s.message()));
    return std::move(replay).Finish();
  }
  report->version = version;
  pb::Record record;
  size_t pos = books_format::kHeaderSize;
  while (pos < file.size()) {
    absl::string_view payload;
    const char* why = RecordAt(file, pos, &payload);
    if (*why == '\0') {
      if (record.ParseFromArray(payload.data(),
                                static_cast<int>(payload.size()))) {
        replay.Apply(record, pos);
      } else {
        replay.Skip(pos, "its payload does not parse");
      }
      pos += kFrameSize + payload.size();
      continue;
    }
    // Resynchronise: the next offset where a whole record checks out.
    size_t next = pos + 1;
    for (; next + kFrameSize <= file.size(); ++next) {
      if (*RecordAt(file, next, &payload) == '\0') break;
    }
    if (next + kFrameSize > file.size()) {
      if (LooksTorn(file, pos)) {
        report->torn_tail_bytes = file.size() - pos;
        replay.Problem(absl::StrCat("a torn last record of ",
                                    report->torn_tail_bytes,
                                    " bytes at offset ", pos, " ignored"));
      } else {
        replay.Skip(pos, absl::StrCat(why, "; the ", file.size() - pos,
                                      " bytes from there to the end ignored"));
      }
      break;
    }
    replay.Skip(pos, absl::StrCat(why, "; ", next - pos,
                                  " bytes ignored up to the next record"));
    pos = next;
  }
  return std::move(replay).Finish();
}

absl::StatusOr<Books> BooksJournal::Load(const std::string& dir,
                                         LoadReport* report) {
  *report = LoadReport();
  const std::string path = absl::StrCat(dir, "/books");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return Books();
    return ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  std::string file;
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    file.append(chunk, static_cast<size_t>(n));
  }
  return LoadFromBytes(file, report);
}

}  // namespace shmbroker
