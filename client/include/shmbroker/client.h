// shmbroker::Client: a connection to shmbrokerd.
//
// Connect() opens the fd channel (which is also this process's client
// connection: when the process exits or dies, the daemon drops its holds) and
// a gRPC channel to the daemon's socket. Allocate/Attach return mapped
// Buffers. Errors are absl::Status with the daemon's message (e.g.
// RESOURCE_EXHAUSTED "over capacity: ..."); UNAVAILABLE when no daemon
// answers. Thread-safe: one Client may serve many threads.
//
//   auto client = shmbroker::Client::Connect();
//   auto buffer = (*client)->Allocate({.size = 1 << 20, .name = "frames"});
//   std::memset(buffer->data(), 0, buffer->size());
#ifndef SHMBROKER_CLIENT_CLIENT_H_
#define SHMBROKER_CLIENT_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shmbroker/buffer.h"
#include "shmbroker/types.h"

namespace shmbroker::v1 {
class AttachRequest;
}  // namespace shmbroker::v1

namespace shmbroker::client {

struct ClientOptions {
  // Empty: $SHMBROKER_SOCKET, /run/shmbroker/broker.sock for root, else
  // $XDG_RUNTIME_DIR/shmbroker/broker.sock (as the daemon).
  std::string socket_path;
  // Deadline of each call.
  absl::Duration timeout = absl::Seconds(10);
  // Open the fd channel (a client connection). Without it only Ping,
  // Describe, List and Status work; Allocate and Attach need it.
  bool open_session = true;
};

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClientOptions& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& socket_path() const;

  absl::Status Ping();
  absl::StatusOr<Buffer> Allocate(const AllocateOptions& options);
  absl::StatusOr<Buffer> Attach(const std::string& name,
                                Access access = Access::kDefault);
  absl::StatusOr<Buffer> AttachHandle(uint64_t handle,
                                      Access access = Access::kDefault);
  // Drops one hold this connection owns on `handle` (e.g. one kept by a
  // Buffer whose ownership was given up); returns the holders left.
  absl::StatusOr<uint32_t> Release(uint64_t handle);
  absl::StatusOr<BufferInfo> Describe(const std::string& name);
  // Every buffer this process may see (all pages).
  absl::StatusOr<std::vector<BufferInfo>> List();
  absl::StatusOr<DaemonStatus> Status();
  // Whether the daemon reports SERVING on grpc.health.v1 (it does while it
  // can allocate).
  absl::StatusOr<bool> Serving();

 private:
  explicit Client(std::shared_ptr<Connection> connection);
  absl::StatusOr<Buffer> AttachWith(const v1::AttachRequest& request);
  template <typename Response>
  absl::StatusOr<Buffer> MakeBuffer(const Response& response);

  std::shared_ptr<Connection> connection_;
};

}  // namespace shmbroker::client

namespace shmbroker {
using client::Buffer;
using client::Client;
}  // namespace shmbroker

#endif  // SHMBROKER_CLIENT_CLIENT_H_
