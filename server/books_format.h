// The books journal's bytes (server/books_journal.h): the file header, the
// framing of each record, and the conversion between core/books.h entities
// and the shmbroker.books.v1 records (proto/shmbroker/books/v1/books.proto).
//
//   file   := header record*
//   header := "SHMBOOKS" u32 version u32 crc32(first 12 bytes)      16 bytes
//   record := u32 kRecordMagic u32 length u32 crc32(length, payload)
//             payload (a serialized books.v1.Record, length <= 64 KiB)
//
// Integers are little-endian; crc32 is zlib's. The version changes only for
// what the proto's rules (fields are only ever added) cannot express; a
// daemon distrusts a file whose version is newer than its own.
#ifndef SHMBROKER_SERVER_BOOKS_FORMAT_H_
#define SHMBROKER_SERVER_BOOKS_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/books.h"
#include "shmbroker/books/v1/books.pb.h"

namespace shmbroker::books_format {

inline constexpr char kFileMagic[8] = {'S', 'H', 'M', 'B', 'O', 'O', 'K', 'S'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHeaderSize = 16;
// Its bytes (c0 5e 0c b0 on disk) are none of [A-Za-z0-9._-], so no buffer
// name (core/buffer_name.h) can spell it inside a record.
inline constexpr uint32_t kRecordMagic = 0xB00C5EC0;
inline constexpr size_t kFrameSize = 12;  // magic, length, crc
inline constexpr uint32_t kMaxPayload = 64 * 1024;

inline void PutU32(uint32_t v, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (8 * i));
}
inline uint32_t GetU32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= uint32_t{static_cast<unsigned char>(in[i])} << (8 * i);
  }
  return v;
}

// The 16 header bytes of version kVersion.
std::string Header();
// OK with *version set, or why the header cannot be trusted (too short,
// wrong magic, wrong crc, version 0 or newer than kVersion).
absl::Status CheckHeader(absl::string_view file, uint32_t* version);

// crc32 of a record's length field and payload.
uint32_t RecordCrc(uint32_t length, const char* payload);

// Appends `record` framed to *out. INVALID_ARGUMENT (nothing appended) if
// it serializes to more than kMaxPayload bytes.
absl::Status AppendRecord(const books::v1::Record& record, std::string* out);

// Calls `emit` with each record of a snapshot of `books`: a Put of every
// live entity, the last arena, and erases that carry the last handle and
// lease handed out when their entities are gone (a replay raises the last
// ids on erases too). The record `emit` gets is only valid during the call.
void SnapshotRecords(const Books& books,
                     absl::FunctionRef<void(const books::v1::Record&)> emit);
// The two halves of SnapshotRecords: the Puts of its entities, and the ids
// (the last arena, and the erases carrying the last handle and lease when
// `books` has no such entity: a Put that comes later wins on replay).
void EntityRecords(const Books& books,
                   absl::FunctionRef<void(const books::v1::Record&)> emit);
void IdRecords(const Books& books,
               absl::FunctionRef<void(const books::v1::Record&)> emit);

// core/books.h entities to records; FromProto validates what it reads and
// says what is wrong (INVALID_ARGUMENT) rather than trusting it.
void ToProto(const BookedBuffer& buffer, uint64_t revision,
             books::v1::PutBuffer* out);
void ToProto(const BookedLease& lease, books::v1::PutLease* out);
absl::Status FromProto(const books::v1::PutBuffer& in, BookedBuffer* out);
absl::Status FromProto(const books::v1::PutLease& in, BookedLease* out);

}  // namespace shmbroker::books_format

#endif  // SHMBROKER_SERVER_BOOKS_FORMAT_H_
