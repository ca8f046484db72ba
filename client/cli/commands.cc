#include "client/cli/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli/output.h"
#include "common/unique_fd.h"

namespace shmbroker::cli {
namespace {

// `fd_channel`: open a client connection (needed to hold buffers).
absl::StatusOr<std::unique_ptr<client::Client>> Connect(const Options& options,
                                                        bool fd_channel) {
  client::ClientOptions connect = options.connect;
  connect.open_client_connection = fd_channel;
  return client::Client::Connect(connect);
}

void Print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);  // a holding command's output must be seen at once
}

void PrintBuffer(const Options& options, const client::BufferInfo& info) {
  if (options.json) {
    Print(BufferJson(info).dump() + "\n");
  } else {
    Print(Table(BufferRows({info}, info.created)));
  }
}

// Keeps `buffer` until --hold passes, SIGINT/SIGTERM arrives, or its lease
// is lost (SIGUSR2 from the lease-loss callback).
void Hold(const Options& options, const client::Buffer& buffer) {
  std::fprintf(
      stderr, "holding buffer %llu; Ctrl-C %s\n",
      static_cast<unsigned long long>(buffer.handle()),
      options.detach ? "leaves it to its detached lease" : "releases it");
  if (options.hold == absl::InfiniteDuration()) {
    int signal_number = 0;
    sigwait(&options.stop_signals, &signal_number);
    return;
  }
  const timespec timeout = absl::ToTimespec(options.hold);
  while (sigtimedwait(&options.stop_signals, nullptr, &timeout) < 0 &&
         errno == EINTR) {
  }
}

absl::Status WriteAll(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(
          absl::StrCat("write to stdout: ", std::strerror(errno)));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(int fd, const std::string& what) {
  std::string data;
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n == 0) return data;
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InvalidArgumentError(
          absl::StrCat("read ", what, ": ", std::strerror(errno)));
    }
    data.append(chunk, static_cast<size_t>(n));
  }
}

// Allocates (of --kind) under a new lease when --ttl or --detach asks for
// one, else under the connection's default lease.
absl::StatusOr<client::Buffer> AllocateUnderLease(
    const Options& options, client::Client& c,
    client::AllocateOptions request) {
  request.kind = options.kind;
  request.wait_for_room = options.wait;
  if (options.detach || options.ttl != absl::ZeroDuration()) {
    absl::StatusOr<client::LeaseInfo> lease =
        c.GrantLease(options.ttl, options.detach);
    if (!lease.ok()) return lease.status();
    request.lease_id = lease->id;
  }
  return c.Allocate(request);
}

// Holds the buffer as asked, then releases it, or with --detach leaves it
// to its detached lease. A lost lease is the command's error.
absl::Status HoldAndFinish(const Options& options, client::Buffer& buffer) {
  if (options.hold > absl::ZeroDuration()) Hold(options, buffer);
  if (absl::Status lost = buffer.lease_status(); !lost.ok()) {
    return absl::Status(
        lost.code(),
        absl::StrCat("the buffer's lease was lost: ", lost.message()));
  }
  if (options.detach) {
    std::fprintf(stderr,
                 "buffer %llu stays under detached lease %llu until its TTL "
                 "runs out (shmbroker revoke %llu ends it now)\n",
                 static_cast<unsigned long long>(buffer.handle()),
                 static_cast<unsigned long long>(buffer.lease_id()),
                 static_cast<unsigned long long>(buffer.lease_id()));
    buffer.Disown();
    return absl::OkStatus();
  }
  return buffer.Release();
}

}  // namespace

absl::Status Alloc(const Options& options, uint64_t size) {
  auto c = Connect(options, /*fd_channel=*/true);
  if (!c.ok()) return c.status();
  absl::StatusOr<client::Buffer> buffer = AllocateUnderLease(
      options, **c, {size, options.name, options.backing, options.share});
  if (!buffer.ok()) return buffer.status();
  PrintBuffer(options, buffer->info());
  return HoldAndFinish(options, *buffer);
}

absl::Status Put(const Options& options, const std::string& name) {
  // Read the input first: its size is the buffer's size.
  std::string data;
  if (options.file.empty()) {
    absl::StatusOr<std::string> in = ReadAll(STDIN_FILENO, "stdin");
    if (!in.ok()) return in.status();
    data = std::move(*in);
  } else {
    UniqueFd fd(::open(options.file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      return absl::NotFoundError(absl::StrCat("cannot open ", options.file,
                                              ": ", std::strerror(errno)));
    }
    absl::StatusOr<std::string> in = ReadAll(fd.get(), options.file);
    if (!in.ok()) return in.status();
    data = std::move(*in);
  }
  if (data.empty()) {
    return absl::InvalidArgumentError(
        "bad size: the input is empty, nothing to put");
  }
  auto c = Connect(options, /*fd_channel=*/true);
  if (!c.ok()) return c.status();
  absl::StatusOr<client::Buffer> buffer = AllocateUnderLease(
      options, **c, {data.size(), name, options.backing, options.share});
  if (!buffer.ok()) return buffer.status();
  std::memcpy(buffer->data(), data.data(), data.size());
  data.clear();
  if (options.seal) {
    if (absl::Status s = buffer->Seal(); !s.ok()) return s;
  }
  PrintBuffer(options, buffer->info());
  return HoldAndFinish(options, *buffer);
}

absl::Status Cat(const Options& options, const std::string& name) {
  Options no_wait = options;
  no_wait.wait = absl::ZeroDuration();
  no_wait.sealed = false;
  return Get(no_wait, name);
}

absl::Status Get(const Options& options, const std::string& name) {
  auto c = Connect(options, /*fd_channel=*/true);
  if (!c.ok()) return c.status();
  client::WaitOptions wait;
  wait.timeout = options.wait;
  wait.until = options.sealed ? client::WaitOptions::Until::kSealed
                              : client::WaitOptions::Until::kCreated;
  absl::StatusOr<client::Buffer> buffer =
      options.wait > absl::ZeroDuration() || options.sealed
          ? (*c)->AttachWhen(name, wait)
          : (*c)->Attach(name);
  if (!buffer.ok()) return buffer.status();
  if (absl::Status s = WriteAll(STDOUT_FILENO, buffer->data(), buffer->size());
      !s.ok()) {
    return s;
  }
  return buffer->Release();
}

absl::Status Seal(const Options& options, const std::string& name) {
  auto c = Connect(options, /*fd_channel=*/true);
  if (!c.ok()) return c.status();
  // The CLI holds nothing: seal a hold of this uid's, i.e. under a detached
  // lease (a `put --detach` that exited) by attaching it first.
  absl::StatusOr<client::Buffer> held = (*c)->Attach(name);
  if (!held.ok()) return held.status();
  absl::Status sealed = held->Seal();
  if (!sealed.ok()) return sealed;
  PrintBuffer(options, held->info());
  return held->Release();
}

absl::Status Describe(const Options& options, const std::string& name) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<client::BufferInfo> info = (*c)->Describe(name);
  if (!info.ok()) return info.status();
  PrintBuffer(options, *info);
  return absl::OkStatus();
}

absl::Status Ls(const Options& options) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<client::ListResult> listed = (*c)->ListWithRevision();
  if (!listed.ok()) return listed.status();
  if (options.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& b : listed->buffers) list.push_back(BufferJson(b));
    Print(nlohmann::json{{"buffers", list}, {"revision", listed->revision}}
              .dump() +
          "\n");
  } else {
    Print(Table(BufferRows(listed->buffers, absl::Now())));
  }
  return absl::OkStatus();
}

absl::Status Status(const Options& options) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<client::DaemonStatus> status = (*c)->Status();
  if (!status.ok()) return status.status();
  Print(options.json ? StatusJson(*status).dump() + "\n" : StatusText(*status));
  return absl::OkStatus();
}

absl::Status Tenants(const Options& options) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<client::DaemonStatus> status = (*c)->Status();
  if (!status.ok()) return status.status();
  if (options.json) {
    Print(TenantsJson(status->tenants).dump() + "\n");
  } else {
    Print(Table(TenantRows(status->tenants)));
  }
  return absl::OkStatus();
}

absl::Status Health(const Options& options) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<bool> serving = (*c)->Serving();
  if (!serving.ok()) return serving.status();
  Print(*serving ? "SERVING\n" : "NOT_SERVING\n");
  if (!*serving) {
    return absl::UnavailableError(
        "daemon is NOT_SERVING: it cannot allocate (capacity full or "
        "stopping)");
  }
  return absl::OkStatus();
}

absl::Status Leases(const Options& options) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<std::vector<client::LeaseInfo>> leases = (*c)->ListLeases();
  if (!leases.ok()) return leases.status();
  Print(options.json ? LeasesJson(*leases).dump() + "\n"
                     : Table(LeaseRows(*leases)));
  return absl::OkStatus();
}

absl::Status Revoke(const Options& options, uint64_t lease_id) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<uint64_t> reclaimed = (*c)->RevokeLease(lease_id);
  if (!reclaimed.ok()) return reclaimed.status();
  Print(options.json ? nlohmann::json{{"lease", lease_id},
                                      {"bytes_reclaimed", *reclaimed}}
                               .dump() +
                           "\n"
                     : absl::StrFormat("revoked lease %d; %d bytes reclaimed\n",
                                       lease_id, *reclaimed));
  return absl::OkStatus();
}

absl::Status Release(const Options& options, const std::string& name) {
  auto c = Connect(options, /*fd_channel=*/true);
  if (!c.ok()) return c.status();
  absl::StatusOr<uint32_t> holders = (*c)->ReleaseByName(name);
  if (!holders.ok()) return holders.status();
  Print(options.json
            ? nlohmann::json{{"name", name}, {"holders", *holders}}.dump() +
                  "\n"
            : absl::StrFormat("released %s; %d holders left%s\n", name,
                              *holders, *holders == 0 ? " (reclaimed)" : ""));
  return absl::OkStatus();
}

absl::Status Watch(const Options& options, const std::string& prefix) {
  auto c = Connect(options, /*fd_channel=*/false);
  if (!c.ok()) return c.status();
  absl::StatusOr<std::unique_ptr<client::Watcher>> watcher =
      (*c)->Watch(prefix, {.after_revision = options.from_revision});
  if (!watcher.ok()) return watcher.status();
  // The stop signals are blocked (main.cc): look for one between events.
  const timespec now{};
  for (;;) {
    absl::StatusOr<client::WatchEvent> event =
        (*watcher)->Next(absl::Now() + absl::Milliseconds(100));
    if (event.ok()) {
      Print(options.json ? WatchEventJson(*event).dump() + "\n"
                         : WatchEventText(*event));
      continue;
    }
    if (event.status().code() != absl::StatusCode::kDeadlineExceeded) {
      return event.status();
    }
    int signal_number = 0;
    while ((signal_number =
                sigtimedwait(&options.stop_signals, nullptr, &now)) < 0 &&
           errno == EINTR) {
    }
    if (signal_number == SIGINT || signal_number == SIGTERM) {
      return absl::OkStatus();
    }
  }
}

}  // namespace shmbroker::cli
