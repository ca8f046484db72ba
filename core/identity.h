// Identity of a process as the kernel reports it (SO_PEERCRED). The daemon
// never takes identity from what a client says.
#ifndef SHMBROKER_CORE_IDENTITY_H_
#define SHMBROKER_CORE_IDENTITY_H_

#include <sys/types.h>

namespace shmbroker {

struct Identity {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;

  bool is_root() const { return uid == 0; }
  friend bool operator==(const Identity&, const Identity&) = default;
};

}  // namespace shmbroker

#endif  // SHMBROKER_CORE_IDENTITY_H_
