// The shmbroker CLI's subcommands. Each returns OK or a status whose message
// is printed as the one-line error; flags come from client/cli/main.cc.
#ifndef SHMBROKER_CLIENT_CLI_COMMANDS_H_
#define SHMBROKER_CLIENT_CLI_COMMANDS_H_

#include <signal.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "shmbroker/client.h"

namespace shmbroker::cli {

struct Options {
  client::ClientOptions connect;
  bool json = false;
  std::string name;
  client::Backing backing = client::Backing::kDefault;
  client::Kind kind = client::Kind::kDefault;
  std::vector<client::ShareRule> share;
  absl::Duration hold = absl::InfiniteDuration();
  // alloc, put: hold under a lease of this TTL (0: the connection's default
  // lease), detached if asked.
  absl::Duration ttl = absl::ZeroDuration();
  bool detach = false;
  std::string file;
  // put: seal after filling. get: wait this long for the buffer (zero: do
  // not wait), until it is sealed if `sealed`. alloc, put: wait this long
  // for room.
  bool seal = false;
  absl::Duration wait = absl::ZeroDuration();
  bool sealed = false;
  // watch: the changes after this revision (0: from now on).
  uint64_t from_revision = 0;
  // Blocked in every thread; Hold() waits for them. Includes SIGUSR2, which
  // the client raises when a lease is lost.
  sigset_t stop_signals;
};

absl::Status Alloc(const Options& options, uint64_t size);
absl::Status Put(const Options& options, const std::string& name);
absl::Status Cat(const Options& options, const std::string& name);
// Like cat, but waits (options.wait) for the buffer to be created or sealed.
absl::Status Get(const Options& options, const std::string& name);
absl::Status Seal(const Options& options, const std::string& name);
absl::Status Describe(const Options& options, const std::string& name);
absl::Status Ls(const Options& options);
absl::Status Status(const Options& options);
absl::Status Tenants(const Options& options);
// OK when the daemon is SERVING; UNAVAILABLE otherwise.
absl::Status Health(const Options& options);
absl::Status Leases(const Options& options);
absl::Status Revoke(const Options& options, uint64_t lease_id);
absl::Status Release(const Options& options, const std::string& name);
// Prints the changes to buffers whose name starts with `prefix` until
// SIGINT/SIGTERM (then OK) or the stream ends (its status).
absl::Status Watch(const Options& options, const std::string& prefix);

}  // namespace shmbroker::cli

#endif  // SHMBROKER_CLIENT_CLI_COMMANDS_H_
