// Framing of the fd channel: a SOCK_SEQPACKET Unix socket beside the gRPC
// socket. Every message is exactly one Frame (fixed size, host byte order:
// both ends are on one host). Header-only; part of the daemon/client contract.
//
//   daemon -> client  kHello    once, on connect: session id and token
//   daemon -> client  kFd       one per grant, with the fd in SCM_RIGHTS
//   daemon -> client  kError    then the daemon closes the channel
//   client -> daemon  kRelease  drop one hold on `handle` (one-way; the daemon
//                               processes it before the client's next call)
//   client -> daemon  kForgetArena  the client closed its fds of arena `id`:
//                               send it again with the next grant in it
//                               (one-way, ordered like kRelease)
//
// Anything else a client sends (bad size, magic, version or type, or any
// ancillary data) is a protocol error: the daemon answers kError and closes
// that client connection, dropping its holds.
#ifndef SHMBROKER_COMMON_FD_CHANNEL_PROTOCOL_H_
#define SHMBROKER_COMMON_FD_CHANNEL_PROTOCOL_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace shmbroker::fdchannel {

inline constexpr uint32_t kMagic = 0x424d4853;  // "SHMB" little-endian
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kTokenBytes = 16;
inline constexpr size_t kTextBytes = 128;
// gRPC metadata key carrying the hex session token on every call.
inline constexpr char kSessionMetadataKey[] = "shmbroker-session";
// Optional gRPC metadata: how many frames (kRelease and kForgetArena) the
// client has sent on this session so far (decimal). The daemon reads the fd
// channel before the call only when some of them are not applied yet; without
// it, it always does.
inline constexpr char kReleasesSentMetadataKey[] = "shmbroker-releases-sent";

enum class FrameType : uint16_t {
  kHello = 1,
  kFd = 2,
  kError = 3,
  kRelease = 4,
  kForgetArena = 5,
};

struct Frame {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  FrameType type = FrameType::kError;
  // kHello: session id. kFd: grant id. kRelease: buffer handle.
  // kForgetArena: arena id.
  uint64_t id = 0;
  // kHello: the connection's default lease id. kFd: buffer handle.
  // kRelease: the lease the hold is under (0: the daemon picks, as for the
  // Release RPC). kForgetArena: 1 for the arena's writable fd, 0 for its
  // read-only one.
  uint64_t handle = 0;
  // kHello: session token.
  uint8_t token[kTokenBytes] = {};
  // kError: NUL-terminated message.
  char text[kTextBytes] = {};
};
static_assert(sizeof(Frame) == 168);

inline Frame MakeFrame(FrameType type, uint64_t id, uint64_t handle = 0) {
  Frame f;
  f.type = type;
  f.id = id;
  f.handle = handle;
  return f;
}

inline Frame MakeErrorFrame(const std::string& message) {
  Frame f = MakeFrame(FrameType::kError, 0);
  std::strncpy(f.text, message.c_str(), kTextBytes - 1);
  return f;
}

inline bool HasValidHeader(const Frame& f) {
  return f.magic == kMagic && f.version == kVersion;
}

inline std::string TokenToHex(const uint8_t (&token)[kTokenBytes]) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * kTokenBytes);
  for (uint8_t b : token) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

// Sends one frame, with `fd` as SCM_RIGHTS unless it is negative. Returns
// what sendmsg returns (-1 and errno on failure).
inline ssize_t SendFrame(int sock, const Frame& frame, int fd, int flags) {
  iovec iov{const_cast<Frame*>(&frame), sizeof(frame)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  return ::sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
}

// What one recvmsg of a frame brought.
struct Received {
  ssize_t bytes = 0;  // recvmsg's result (-1: see errno, 0: end of stream)
  int msg_flags = 0;  // MSG_TRUNC / MSG_CTRUNC tell of oversize input
  int fds[4] = {-1, -1, -1, -1};  // received descriptors (O_CLOEXEC); the
  int fd_count = 0;               // caller owns and must close them
};

// Receives one frame and any descriptors sent with it.
inline Received RecvFrame(int sock, Frame* frame, int flags) {
  Received out;
  iovec iov{frame, sizeof(*frame)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(out.fds))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  out.bytes = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  if (out.bytes < 0) return out;
  out.msg_flags = msg.msg_flags;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && out.fd_count < 4; ++i) {
      std::memcpy(&out.fds[out.fd_count++], CMSG_DATA(c) + i * sizeof(int),
                  sizeof(int));
    }
  }
  return out;
}

}  // namespace shmbroker::fdchannel

#endif  // SHMBROKER_COMMON_FD_CHANNEL_PROTOCOL_H_
