// FUZZ_CHECK: the fuzz targets' assertion. It aborts, which libFuzzer counts
// as a crash and saves the input, and prints the failed condition; unlike
// assert() it stays on in release builds.
#ifndef SHMBROKER_TESTS_FUZZ_FUZZ_CHECK_H_
#define SHMBROKER_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

#endif  // SHMBROKER_TESTS_FUZZ_FUZZ_CHECK_H_
