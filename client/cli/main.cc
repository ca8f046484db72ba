// shmbroker: the command-line client of shmbrokerd. See docs/cli.md.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cli/commands.h"
#include "common/byte_size.h"

ABSL_FLAG(std::string, socket, "",
          "daemon socket (default: $SHMBROKER_SOCKET, else "
          "/run/shmbroker/broker.sock for root, else "
          "$XDG_RUNTIME_DIR/shmbroker/broker.sock)");
ABSL_FLAG(bool, json, false, "machine-readable output on stdout");
ABSL_FLAG(std::string, name, "", "alloc: name of the new buffer");
ABSL_FLAG(std::string, backing, "", "alloc, put: memfd (default) or posix");
ABSL_FLAG(std::string, kind, "auto",
          "alloc, put: pooled, dedicated, or auto (the daemon pools small "
          "owner-only memfd buffers)");
ABSL_FLAG(std::vector<std::string>, share, {},
          "alloc, put: uid:N, gid:N or all, each with optional :ro (default) "
          "or :rw; several separated by commas");
ABSL_FLAG(absl::Duration, hold, absl::InfiniteDuration(),
          "alloc, put: how long to hold the buffer (e.g. 500ms, 30s, 5m); "
          "default: until SIGINT/SIGTERM, or 0 with --detach");
ABSL_FLAG(std::string, file, "",
          "put: read the data from this file, not stdin");
ABSL_FLAG(absl::Duration, ttl, absl::ZeroDuration(),
          "alloc, put: TTL of the lease the buffer is held under (the client "
          "renews it while it runs); default: the connection's default lease");
ABSL_FLAG(bool, seal, false,
          "put: seal the buffer once filled (immutable from then on; "
          "waiters for its seal get it)");
ABSL_FLAG(absl::Duration, wait, absl::ZeroDuration(),
          "get: wait up to this long for the buffer to be created (or, with "
          "--sealed, sealed). alloc, put: wait up to this long for room "
          "when the daemon has none. 0: do not wait");
ABSL_FLAG(bool, sealed, false,
          "get: wait until the buffer is sealed, not only created");
ABSL_FLAG(uint64_t, from, 0,
          "watch: print the changes after this revision (e.g. ls --json's "
          "\"revision\"), if the daemon still keeps them; 0: from now on");
ABSL_FLAG(bool, detach, false,
          "alloc, put: hold under a detached lease, so the buffer outlives "
          "this command for the TTL; without --hold, return at once");

namespace {

constexpr char kUsage[] =
    "command-line client of shmbrokerd.\n"
    "Usage: shmbroker [--socket=PATH] [--json] COMMAND [ARGS]\n"
    "  alloc SIZE [--name=NAME] [--backing=memfd|posix] [--share=RULE]\n"
    "             [--kind=auto|pooled|dedicated] [--hold=DURATION]\n"
    "             [--ttl=DURATION] [--detach] [--wait=DURATION]\n"
    "             allocate and hold a buffer (waiting for room if asked)\n"
    "  put NAME [--file=PATH] [--backing=...] [--share=...] [--kind=...]\n"
    "             [--hold=...] [--ttl=...] [--detach] [--wait=...]\n"
    "             allocate a buffer sized to the input, fill it, hold it\n"
    "  put NAME --seal   ... and seal it once filled\n"
    "  cat NAME   write a buffer's bytes to stdout\n"
    "  get NAME [--wait=DURATION] [--sealed]\n"
    "             like cat, but waits for the buffer to be created (sealed)\n"
    "  seal NAME  make a buffer immutable (this uid must hold it)\n"
    "  describe NAME     one buffer, as ls shows it\n"
    "  ls         list buffers\n"
    "  status     daemon-wide figures\n"
    "  tenants    bytes and buffers per owner uid\n"
    "  health     exit 0 if the daemon is SERVING (can allocate), else 1\n"
    "  leases     list leases (this uid's; all for root)\n"
    "  revoke LEASE_ID   end a lease now, dropping its holds\n"
    "  release NAME      drop this uid's hold under a detached lease\n"
    "  watch [PREFIX] [--from=REVISION]\n"
    "             print buffer changes (created, sealed, released) as they\n"
    "             happen, until Ctrl-C\n"
    "SIZE: 4096, 4KiB, 1MiB, 1GiB. DURATION: 500ms, 30s, 5m.";

// absl::ParseCommandLine prints why it refuses a flag and exits 1, but a
// usage error exits 2 here (docs/cli.md). While it parses, an exit is such
// a refusal, unless a help flag was given (then it exits after the usage).
bool parsing_flags = false;

void UsageErrorsExitTwo() {
  if (parsing_flags) std::_Exit(2);
}

bool AsksForHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (absl::StartsWith(arg, "--help") || absl::StartsWith(arg, "-help") ||
        arg == "--version" || arg == "-version") {
      return true;
    }
  }
  return false;
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "shmbroker: %s\n(run shmbroker --help for usage)\n",
               message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // --help lists this program's flags (Abseil matches by file name).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "cli/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  parsing_flags = !AsksForHelp(argc, argv);
  std::atexit(UsageErrorsExitTwo);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  parsing_flags = false;
  if (args.size() < 2) return UsageError("no command given");
  const std::string command = args[1];
  const std::vector<std::string> operands(args.begin() + 2, args.end());

  shmbroker::cli::Options options;
  options.connect.socket_path = absl::GetFlag(FLAGS_socket);
  options.json = absl::GetFlag(FLAGS_json);
  options.name = absl::GetFlag(FLAGS_name);
  options.hold = absl::GetFlag(FLAGS_hold);
  options.file = absl::GetFlag(FLAGS_file);
  options.ttl = absl::GetFlag(FLAGS_ttl);
  options.detach = absl::GetFlag(FLAGS_detach);
  options.seal = absl::GetFlag(FLAGS_seal);
  options.wait = absl::GetFlag(FLAGS_wait);
  options.sealed = absl::GetFlag(FLAGS_sealed);
  options.from_revision = absl::GetFlag(FLAGS_from);
  if (options.wait < absl::ZeroDuration()) {
    return UsageError("--wait must not be negative");
  }
  if (options.ttl < absl::ZeroDuration()) {
    return UsageError("--ttl must not be negative");
  }
  // A detached buffer needs nobody to wait: unless --hold says otherwise,
  // return at once and leave it to its lease.
  if (options.detach && options.hold == absl::InfiniteDuration()) {
    options.hold = absl::ZeroDuration();
  }
  if (std::string b = absl::GetFlag(FLAGS_backing); !b.empty()) {
    auto backing = shmbroker::client::ParseBacking(b);
    if (!backing.ok())
      return UsageError(std::string(backing.status().message()));
    options.backing = *backing;
  }
  auto kind = shmbroker::client::ParseKind(absl::GetFlag(FLAGS_kind));
  if (!kind.ok()) return UsageError(std::string(kind.status().message()));
  options.kind = *kind;
  for (const std::string& rule : absl::GetFlag(FLAGS_share)) {
    auto parsed = shmbroker::client::ParseShareRule(rule);
    if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
    options.share.push_back(*parsed);
  }
  if (options.hold < absl::ZeroDuration()) {
    return UsageError("--hold must not be negative");
  }
  // Block the stop signals before the client starts threads, so that only
  // sigwait in Hold() takes them and the buffer is released on the way out.
  sigemptyset(&options.stop_signals);
  sigaddset(&options.stop_signals, SIGINT);
  sigaddset(&options.stop_signals, SIGTERM);
  sigaddset(&options.stop_signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &options.stop_signals, nullptr);
  // A lost lease ends a hold at once (the command then reports it).
  options.connect.on_lease_lost = [](uint64_t, const absl::Status&) {
    ::kill(::getpid(), SIGUSR2);
  };

  auto want = [&](size_t n, const char* what) {
    return operands.size() == n
               ? 0
               : UsageError(absl::StrCat(command, " takes ", what));
  };
  absl::Status status;
  if (command == "alloc") {
    if (int rc = want(1, "one SIZE")) return rc;
    auto size = shmbroker::ParseByteSize(operands[0]);
    if (!size.ok()) return UsageError(std::string(size.status().message()));
    status = shmbroker::cli::Alloc(options, *size);
  } else if (command == "put") {
    if (int rc = want(1, "one NAME")) return rc;
    status = shmbroker::cli::Put(options, operands[0]);
  } else if (command == "cat") {
    if (int rc = want(1, "one NAME")) return rc;
    status = shmbroker::cli::Cat(options, operands[0]);
  } else if (command == "get") {
    if (int rc = want(1, "one NAME")) return rc;
    status = shmbroker::cli::Get(options, operands[0]);
  } else if (command == "seal") {
    if (int rc = want(1, "one NAME")) return rc;
    status = shmbroker::cli::Seal(options, operands[0]);
  } else if (command == "describe") {
    if (int rc = want(1, "one NAME")) return rc;
    status = shmbroker::cli::Describe(options, operands[0]);
  } else if (command == "ls") {
    if (int rc = want(0, "no arguments")) return rc;
    status = shmbroker::cli::Ls(options);
  } else if (command == "status") {
    if (int rc = want(0, "no arguments")) return rc;
    status = shmbroker::cli::Status(options);
  } else if (command == "tenants") {
    if (int rc = want(0, "no arguments")) return rc;
    status = shmbroker::cli::Tenants(options);
  } else if (command == "health") {
    if (int rc = want(0, "no arguments")) return rc;
    status = shmbroker::cli::Health(options);
  } else if (command == "leases") {
    if (int rc = want(0, "no arguments")) return rc;
    status = shmbroker::cli::Leases(options);
  } else if (command == "revoke") {
    if (int rc = want(1, "one LEASE_ID")) return rc;
    uint64_t id = 0;
    if (!absl::SimpleAtoi(operands[0], &id) || id == 0) {
      return UsageError(absl::StrCat("bad LEASE_ID \"", operands[0],
                                     "\": a positive number"));
    }
    status = shmbroker::cli::Revoke(options, id);
  } else if (command == "release") {
    if (int rc = want(1, "one NAME")) return rc;
    status = shmbroker::cli::Release(options, operands[0]);
  } else if (command == "watch") {
    if (operands.size() > 1) return UsageError("watch takes at most a PREFIX");
    status =
        shmbroker::cli::Watch(options, operands.empty() ? "" : operands[0]);
  } else {
    return UsageError(absl::StrCat("unknown command \"", command, "\""));
  }
  if (!status.ok()) {
    std::fprintf(stderr, "shmbroker: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
