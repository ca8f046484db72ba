#include "shmbroker/mapping.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_format.h"

namespace shmbroker::client {

Mapping::Mapping(Mapping&& other) noexcept { *this = std::move(other); }

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    Unmap();
    base_ = std::exchange(other.base_, nullptr);
    base_length_ = std::exchange(other.base_length_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    writable_ = std::exchange(other.writable_, false);
  }
  return *this;
}

Mapping::~Mapping() { Unmap(); }

void Mapping::Unmap() {
  if (base_ != nullptr) ::munmap(base_, base_length_);
  base_ = nullptr;
  base_length_ = 0;
  data_ = nullptr;
  size_ = 0;
}

absl::StatusOr<Mapping> Mapping::Map(int fd, uint64_t offset, uint64_t length,
                                     bool writable) {
  if (length == 0) {
    return absl::InvalidArgumentError("refusing to map 0 bytes");
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t aligned = offset / page * page;
  const uint64_t remainder = offset - aligned;
  if (length > std::numeric_limits<size_t>::max() - remainder) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "window of %d bytes at offset %d is too large", length, offset));
  }
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  void* base = ::mmap(nullptr, remainder + length, prot, MAP_SHARED, fd,
                      static_cast<off_t>(aligned));
  if (base == MAP_FAILED) {
    const int err = errno;
    std::string what = absl::StrFormat("mmap of %d bytes at offset %d: %s",
                                       length, offset, std::strerror(err));
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(what);
    }
    return absl::InternalError(what);
  }
  Mapping m;
  m.base_ = base;
  m.base_length_ = remainder + length;
  m.data_ = static_cast<uint8_t*>(base) + remainder;
  m.size_ = length;
  m.writable_ = writable;
  return m;
}

}  // namespace shmbroker::client
