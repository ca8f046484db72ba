// Sending and receiving fd-channel frames (common/fd_channel_protocol.h)
// with their descriptors over a SOCK_SEQPACKET socket. Header-only, libc
// only. Received descriptors are O_CLOEXEC and owned by the caller.
#ifndef SHMBROKER_COMMON_FD_CHANNEL_IO_H_
#define SHMBROKER_COMMON_FD_CHANNEL_IO_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstring>

#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"

namespace shmbroker::fdchannel {

// Sends one frame, with `fd` as SCM_RIGHTS unless it is negative. Returns
// what sendmsg returns (-1 and errno on failure). Never raises SIGPIPE.
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

// Whether SendFrame sent the whole frame.
inline bool SentWhole(ssize_t sent) {
  return sent == static_cast<ssize_t>(sizeof(Frame));
}

// One frame as received: how it arrived, and the first descriptor that
// came with it (any others are closed).
struct Received {
  Envelope envelope;  // envelope.bytes < 0: see errno; 0: end of stream
  UniqueFd fd;
};

// Receives one frame into `*frame`.
inline Received RecvFrame(int sock, Frame* frame, int flags) {
  Received out;
  iovec iov{frame, sizeof(*frame)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  out.envelope.bytes = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  if (out.envelope.bytes < 0) return out;
  out.envelope.msg_flags = msg.msg_flags;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (out.envelope.fd_count++ == 0) {
        out.fd.reset(fd);
      } else {
        ::close(fd);
      }
    }
  }
  return out;
}

}  // namespace shmbroker::fdchannel

#endif  // SHMBROKER_COMMON_FD_CHANNEL_IO_H_
