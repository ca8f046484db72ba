#include "server/restart.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/unique_fd.h"
#include "server/logging.h"
#include "server/service_manager.h"

namespace shmbroker {
namespace {

constexpr size_t kInstanceIdDigits = 16;

bool IsInstanceId(const std::string& id) {
  return id.size() == kInstanceIdDigits &&
         id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Removes the POSIX names of this instance (`prefix` is "/<shm_prefix>.
// <instance>") that no restored buffer uses: a predecessor killed between
// creating one and booking it left it behind. Returns how many.
size_t RemoveStrayNames(const std::string& prefix, const Books& live) {
  absl::flat_hash_set<std::string> used;
  for (const auto& [handle, buffer] : live.buffers) {
    if (!buffer.info.shm_name.empty()) used.insert(buffer.info.shm_name);
  }
  const std::string start = absl::StrCat(prefix.substr(1), ".");
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return 0;
  std::vector<std::string> stray;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = absl::StrCat("/", entry->d_name);
    if (std::string_view(entry->d_name).starts_with(start) &&
        !used.contains(name)) {
      stray.push_back(name);
    }
  }
  ::closedir(dir);
  for (const std::string& name : stray) ::shm_unlink(name.c_str());
  return stray.size();
}

}  // namespace

absl::StatusOr<std::string> Restart::InstanceId(const std::string& state_dir) {
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("--state_dir ", state_dir));
  }
  const std::string path = absl::StrCat(state_dir, "/instance");
  {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    char text[kInstanceIdDigits] = {};
    if (fd.valid() && ::read(fd.get(), text, sizeof(text)) ==
                          static_cast<ssize_t>(sizeof(text))) {
      std::string id(text, sizeof(text));
      if (IsInstanceId(id)) return id;
      spdlog::warn("{} does not hold an instance id: making a new one", path);
    }
  }
  uint64_t bits = 0;
  if (::getrandom(&bits, sizeof(bits), 0) != sizeof(bits)) {
    return ErrnoToStatus(errno, "getrandom");
  }
  const std::string id = absl::StrFormat("%016x", bits);
  // Written whole, then renamed: a daemon killed here leaves no torn id.
  const std::string tmp = absl::StrCat(path, ".tmp");
  UniqueFd fd(::open(tmp.c_str(),
                     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                     0600));
  if (!fd.valid() ||
      ::write(fd.get(), id.data(), id.size()) !=
          static_cast<ssize_t>(id.size()) ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("write ", path));
  }
  return id;
}

absl::StatusOr<std::unique_ptr<Restart>> Restart::Begin(
    const ServerConfig& config, Registry* registry, Metrics* metrics) {
  LoadReport report;
  absl::StatusOr<Books> books = BooksJournal::Load(config.state_dir, &report);
  if (!books.ok()) {
    // Unreadable books are never trusted; the daemon starts without them.
    spdlog::error("books in {} cannot be read ({}): starting without them",
                  config.state_dir, books.status().message());
    books = Books{};
  }
  for (const std::string& problem : report.problems) {
    spdlog::error("books in {}: {}", config.state_dir, problem);
  }
  if (report.skipped > 0 || report.torn_tail_bytes > 0) {
    spdlog::error(
        "books in {}: skipped {} damaged records and a torn tail of {} "
        "bytes; nothing in them is trusted",
        config.state_dir, report.skipped, report.torn_tail_bytes);
  }
  const bool restart = !books->buffers.empty() || !books->leases.empty();
  RestoreResult restored = registry->Restore(*books, config.restart_grace);
  metrics->Restored(restored);
  for (const std::string& problem : restored.problems) {
    spdlog::error("books in {}: skipped {}", config.state_dir, problem);
  }
  // Under systemd, what the previous daemon left in the fd store (memfd
  // memory only it held) comes back before any client presents anything.
  TakeBackMemoryFromFdStore(registry, metrics);
  Books live = registry->SnapshotBooks();
  if (size_t stray = RemoveStrayNames(registry->options().shm_prefix, live);
      stray > 0) {
    spdlog::warn(
        "removed {} POSIX shm names of this instance that no "
        "booked buffer uses",
        stray);
  }
  if (restart) {
    const uint64_t awaiting = registry->AwaitingMemory();
    spdlog::info(
        "resuming a previous daemon: {} buffers ({} bytes), {} leases, {} "
        "holds; {} POSIX buffers reopened by name; {} buffers wait for their "
        "holders to present them within {} (--restart_grace)",
        restored.buffers, restored.bytes, restored.leases, restored.holds,
        restored.posix_reopened, awaiting,
        absl::FormatDuration(config.restart_grace));
  }
  absl::StatusOr<std::unique_ptr<BooksJournal>> journal =
      BooksJournal::Open(config.state_dir, live);
  if (!journal.ok()) return journal.status();
  registry->SetBookSink(journal->get());
  return std::unique_ptr<Restart>(
      new Restart(registry, metrics, std::move(*journal),
                  absl::Now() + config.restart_grace));
}

Restart::Restart(Registry* registry, Metrics* metrics,
                 std::unique_ptr<BooksJournal> journal, absl::Time grace_end)
    : registry_(registry),
      metrics_(metrics),
      journal_(std::move(journal)),
      grace_end_(grace_end),
      timer_([this] { return Step(); }) {}

Restart::~Restart() { timer_.Stop(); }

void Restart::Start() { timer_.Start(); }

void Restart::Stop() {
  timer_.Stop();
  registry_->StopBookingForRestart();
}

absl::Time Restart::Step() {
  if (grace_over_) return absl::InfiniteFuture();
  if (absl::Now() < grace_end_) return grace_end_;
  grace_over_ = true;
  const CloseResult dropped = registry_->EndRestoreGrace();
  metrics_->GraceEnded(dropped);
  if (dropped.buffers_reclaimed > 0) {
    // Memory only the previous daemon held (a memfd under a detached lease
    // whose producer had exited) survives it only through systemd's fd
    // store (a `systemctl restart`); a holder that did not come back is
    // gone too.
    spdlog::warn(
        "restart grace over: dropped {} buffers ({} bytes) whose memory "
        "nobody presented (held only by the previous daemon, or by clients "
        "that did not come back)",
        dropped.buffers_reclaimed, dropped.bytes_reclaimed);
  }
  return absl::InfiniteFuture();
}

}  // namespace shmbroker
