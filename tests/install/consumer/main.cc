// Allocates, writes, attaches by name and reads back through an installed
// shmbroker; prints "ok" on success.
#include <cstdio>
#include <cstring>

#include "shmbroker/client.h"

int main(int argc, char** argv) {
  shmbroker::client::ClientOptions options;
  options.socket_path = argv[1];
  auto client = shmbroker::Client::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }
  auto buffer = (*client)->Allocate({.size = 4096, .name = argv[2]});
  if (!buffer.ok()) {
    std::fprintf(stderr, "%s\n", buffer.status().ToString().c_str());
    return 1;
  }
  std::memcpy(buffer->data(), "installed", 9);
  auto again = (*client)->Attach(argv[2]);
  if (!again.ok() || std::memcmp(again->data(), "installed", 9) != 0) {
    std::fprintf(stderr, "attach failed\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
