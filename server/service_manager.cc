#include "server/service_manager.h"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/unique_fd.h"
#include "server/logging.h"

namespace shmbroker {
namespace {

constexpr absl::string_view kBufferPrefix = "shmbroker-buffer-";
constexpr absl::string_view kArenaPrefix = "shmbroker-arena-";

bool UnderServiceManager() { return std::getenv("NOTIFY_SOCKET") != nullptr; }

void Notify(const char* state) {
  // unset_environment=0: the fd store needs $NOTIFY_SOCKET again later.
  if (const int r = sd_notify(0, state); r < 0) {
    spdlog::warn("sd_notify {}: {}", state, std::strerror(-r));
  }
}

std::string StoreName(const KeptMemory& kept) {
  return absl::StrCat(
      kept.kind == KeptMemory::Kind::kArena ? kArenaPrefix : kBufferPrefix,
      kept.id);
}

// The kind and id a stored fd's name gives, or false for a name not ours.
bool ParseStoreName(absl::string_view name, KeptMemory::Kind* kind,
                    uint64_t* id) {
  if (absl::ConsumePrefix(&name, kBufferPrefix)) {
    *kind = KeptMemory::Kind::kBuffer;
  } else if (absl::ConsumePrefix(&name, kArenaPrefix)) {
    *kind = KeptMemory::Kind::kArena;
  } else {
    return false;
  }
  return absl::SimpleAtoi(name, id) && *id != 0;
}

}  // namespace

void NotifyReady() { Notify("READY=1"); }

void NotifyStopping() { Notify("STOPPING=1"); }

size_t KeepMemoryInFdStore(const Registry& registry) {
  if (!UnderServiceManager()) return 0;
  const std::vector<KeptMemory> kept = registry.MemoryToKeep();
  size_t stored = 0;
  size_t failed = 0;
  std::string first_failure;
  for (const KeptMemory& memory : kept) {
    // FDPOLL=0: a memfd cannot be polled, and never hangs up.
    const std::string state =
        absl::StrCat("FDSTORE=1\nFDPOLL=0\nFDNAME=", StoreName(memory));
    const int fd = memory.memory->fd();
    const int r = sd_pid_notify_with_fds(0, 0, state.c_str(), &fd, 1);
    if (r > 0) {
      ++stored;
    } else if (failed++ == 0) {
      first_failure = absl::StrCat(StoreName(memory), ": ",
                                   r < 0 ? std::strerror(-r) : "no socket");
    }
  }
  if (failed > 0) {
    spdlog::error(
        "the service manager's fd store did not take {} of {} memfd "
        "segments and arenas (first: {}); their buffers survive the restart "
        "only if a client presents them",
        failed, kept.size(), first_failure);
  }
  spdlog::info(
      "kept {} memfd segments and arenas in the service manager's fd store "
      "for the next daemon",
      stored);
  return stored;
}

void TakeBackMemoryFromFdStore(Registry* registry, Metrics* metrics) {
  char** names = nullptr;
  const int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) {
    spdlog::error("LISTEN_FDS: {}", std::strerror(-n));
    return;
  }
  KeptAdoption total;
  int taken = 0;
  for (int i = 0; i < n; ++i) {
    UniqueFd fd(SD_LISTEN_FDS_START + i);
    const std::string name = names != nullptr && names[i] != nullptr
                                 ? std::string(names[i])
                                 : std::string("unknown");
    KeptMemory::Kind kind;
    uint64_t id = 0;
    if (!ParseStoreName(name, &kind, &id)) {
      spdlog::warn(
          "closing fd {} passed by the service manager: \"{}\" is "
          "not a name this daemon stores",
          fd.get(), name);
      continue;
    }
    // The memory is this daemon's from now on (or nobody's): a later
    // restart must not find this fd in the store again.
    Notify(absl::StrCat("FDSTOREREMOVE=1\nFDNAME=", name).c_str());
    if (registry == nullptr) {
      spdlog::warn(
          "closing {} from the fd store: --state_dir=none keeps no "
          "books to take it back into",
          name);
      continue;
    }
    absl::StatusOr<KeptAdoption> adopted =
        registry->AdoptKept(kind, id, std::move(fd));
    if (!adopted.ok()) {
      if (adopted.status().code() == absl::StatusCode::kFailedPrecondition) {
        metrics->PresentRefused();
      }
      spdlog::warn("closing {} from the fd store: {}", name,
                   adopted.status().message());
      continue;
    }
    ++taken;
    total.buffers += adopted->buffers;
    total.bytes += adopted->bytes;
    metrics->Readopted(adopted->bytes, adopted->buffers);
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  if (n > 0) {
    spdlog::info(
        "took back {} buffers ({} bytes) from the service manager's fd "
        "store ({} of {} fds adopted)",
        total.buffers, total.bytes, taken, n);
  }
}

}  // namespace shmbroker
