// lease_worker: a client process for the lease and pooling tests, to be killed
// at awkward moments. Prints "ready" once it is in the state the test wants.
//   lease_worker SOCKET alloc-loop N      hold one buffer, then allocate and
//                                         release without pause; "ready"
//                                         after N rounds, looping on until
//                                         killed
//   lease_worker SOCKET keepalive N TTL   N leases of TTL (e.g. 3s), one
//                                         64KiB buffer under each, renewed by
//                                         the library until killed
//   lease_worker SOCKET hold-pooled N     N pooled buffers of growing sizes,
//                                         each filled with 0xee, held until
//                                         killed
//   lease_worker SOCKET arena-fd-lost     the first pooled grant's arena
//                                         cannot be mapped (RLIMIT_AS), so
//                                         the next grant in that arena has
//                                         no fd here; prints "recovered" once
//                                         a second Allocate works anyway
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "shmbroker/client.h"

namespace {

shmbroker::client::AllocateOptions Sized(uint64_t size, uint64_t lease_id) {
  shmbroker::client::AllocateOptions options;
  options.size = size;
  options.lease_id = lease_id;
  return options;
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "lease_worker: %s: %s\n", what.c_str(),
               status.ToString().c_str());
  return 1;
}

// This process's mapped address space (VmSize), in bytes.
uint64_t VirtualBytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  uint64_t kib = 0;
  while (f != nullptr && std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "VmSize: %lu kB", &kib) == 1) break;
  }
  if (f != nullptr) std::fclose(f);
  return kib * 1024;
}

void Ready() {
  std::printf("ready\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: lease_worker SOCKET MODE [ARGS]\n");
    return 2;
  }
  shmbroker::client::ClientOptions options;
  options.socket_path = argv[1];
  const std::string mode = argv[2];
  auto client = shmbroker::Client::Connect(options);
  if (!client.ok()) return Fail("connect", client.status());

  if (mode == "alloc-loop" && argc == 4) {
    const int rounds = std::atoi(argv[3]);
    // Held throughout, so that the kill is always a death with memory.
    auto kept = (*client)->Allocate(Sized(4096, 0));
    if (!kept.ok()) return Fail("allocate", kept.status());
    for (int i = 0;; ++i) {
      if (i == rounds) Ready();
      auto buffer = (*client)->Allocate(Sized(256 << 10, 0));
      if (!buffer.ok()) return Fail("allocate", buffer.status());
      std::memset(buffer->data(), i, 4096);
    }
  }
  if (mode == "keepalive" && argc == 5) {
    const int n = std::atoi(argv[3]);
    absl::Duration ttl;
    if (n <= 0 || !absl::ParseDuration(argv[4], &ttl)) {
      std::fprintf(stderr, "lease_worker: keepalive N TTL\n");
      return 2;
    }
    std::vector<shmbroker::Buffer> held;
    for (int i = 0; i < n; ++i) {
      auto lease = (*client)->GrantLease(ttl);
      if (!lease.ok()) return Fail("grant", lease.status());
      auto buffer = (*client)->Allocate(Sized(64 << 10, lease->id));
      if (!buffer.ok()) return Fail("allocate", buffer.status());
      held.push_back(std::move(*buffer));
    }
    Ready();
    for (;;) ::pause();
  }
  if (mode == "hold-pooled" && argc == 4) {
    const int n = std::atoi(argv[3]);
    std::vector<shmbroker::Buffer> held;
    for (int i = 0; i < n; ++i) {
      // 64 B to 64 KiB: slots of many classes, and page runs.
      shmbroker::client::AllocateOptions options = Sized(64 << (i % 11), 0);
      options.kind = shmbroker::client::Kind::kPooled;
      auto buffer = (*client)->Allocate(options);
      if (!buffer.ok()) return Fail("allocate", buffer.status());
      std::memset(buffer->data(), 0xee, buffer->size());
      held.push_back(std::move(*buffer));
    }
    Ready();
    for (;;) ::pause();
  }
  if (mode == "arena-fd-lost") {
    shmbroker::client::AllocateOptions options = Sized(4096, 0);
    options.kind = shmbroker::client::Kind::kPooled;
    // The test's daemon makes 1 GiB arenas. Leave too little address space
    // for one, but plenty for the call itself: gRPC may start a thread or a
    // malloc arena on the way, and either reserves tens of MiB.
    auto warm = (*client)->Status();
    if (!warm.ok()) return Fail("status", warm.status());
    rlimit saved{};
    ::getrlimit(RLIMIT_AS, &saved);
    rlimit tight = saved;
    tight.rlim_cur = VirtualBytes() + (uint64_t{384} << 20);
    ::setrlimit(RLIMIT_AS, &tight);
    auto lost = (*client)->Allocate(options);
    ::setrlimit(RLIMIT_AS, &saved);
    if (lost.ok()) {
      std::fprintf(stderr, "lease_worker: the arena was mapped anyway\n");
      return 1;
    }
    std::printf("first: %s\n", lost.status().ToString().c_str());
    auto buffer = (*client)->Allocate(options);
    if (!buffer.ok()) return Fail("allocate after the loss", buffer.status());
    std::memset(buffer->data(), 0x42, buffer->size());
    std::printf("recovered\n");
    return 0;
  }
  std::fprintf(stderr, "lease_worker: unknown mode \"%s\"\n", mode.c_str());
  return 2;
}
