// Mapping: an RAII mmap(MAP_SHARED) of a window of a shared-memory fd.
//
// The window [offset, offset + length) need not be page-aligned: the mapping
// starts at the offset rounded down to a page, is that remainder longer, and
// data() points remainder bytes past the start. Zero-length windows are
// refused. Move-only; not thread-safe.
#ifndef SHMBROKER_CLIENT_MAPPING_H_
#define SHMBROKER_CLIENT_MAPPING_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace shmbroker::client {

class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  // INVALID_ARGUMENT for a zero length or an overflowing window; the mmap
  // errno otherwise (a read-only fd mapped writable gives PERMISSION_DENIED).
  static absl::StatusOr<Mapping> Map(int fd, uint64_t offset, uint64_t length,
                                     bool writable);

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool writable() const { return writable_; }
  void Unmap();

 private:
  void* base_ = nullptr;  // page-aligned start of the kernel mapping
  size_t base_length_ = 0;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool writable_ = false;
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_MAPPING_H_
