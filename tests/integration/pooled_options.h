// Helpers the pooled-buffer tests share: options for a pooled allocation,
// and whether a mapped buffer holds one byte value throughout.
#ifndef SHMBROKER_TESTS_INTEGRATION_POOLED_OPTIONS_H_
#define SHMBROKER_TESTS_INTEGRATION_POOLED_OPTIONS_H_

#include <algorithm>
#include <cstdint>
#include <string>

#include "shmbroker/client.h"

namespace shmbroker::testing {

inline client::AllocateOptions Pooled(uint64_t size,
                                      const std::string& name = "") {
  client::AllocateOptions options;
  options.size = size;
  options.name = name;
  options.kind = client::Kind::kPooled;
  return options;
}

inline bool AllBytesAre(const client::Buffer& b, uint8_t value) {
  return std::all_of(b.data(), b.data() + b.size(),
                     [value](uint8_t x) { return x == value; });
}

}  // namespace shmbroker::testing

#endif  // SHMBROKER_TESTS_INTEGRATION_POOLED_OPTIONS_H_
