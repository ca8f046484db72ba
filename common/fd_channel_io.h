// Sending and receiving fd-channel frames (common/fd_channel_protocol.h)
// with their descriptors over a SOCK_SEQPACKET socket. Header-only, libc
// and Abseil only. Received descriptors are O_CLOEXEC and owned by the caller.
#ifndef SHMBROKER_COMMON_FD_CHANNEL_IO_H_
#define SHMBROKER_COMMON_FD_CHANNEL_IO_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "common/fd_channel_protocol.h"
#include "common/unique_fd.h"

namespace shmbroker::fdchannel {

// Sends one frame and the payload that follows it (a Call's or Reply's) as
// one message, with `fd` as SCM_RIGHTS unless it is negative. Returns what
// sendmsg returns (-1 and errno on failure). Never raises SIGPIPE.
inline ssize_t SendMessage(int sock, const Frame& frame,
                           absl::string_view payload, int fd, int flags) {
  iovec iov[2] = {{const_cast<Frame*>(&frame), sizeof(frame)},
                  {const_cast<char*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
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

// Sends one frame without a payload.
inline ssize_t SendFrame(int sock, const Frame& frame, int fd, int flags) {
  return SendMessage(sock, frame, {}, fd, flags);
}

// Whether SendFrame (or SendMessage, with its payload's size) sent it all.
inline bool SentWhole(ssize_t sent, size_t payload_bytes = 0) {
  return sent == static_cast<ssize_t>(sizeof(Frame) + payload_bytes);
}

// One frame as received: how it arrived, and the first descriptor that
// came with it (any others are closed).
struct Received {
  Envelope envelope;  // envelope.bytes < 0: see errno; 0: end of stream
  UniqueFd fd;
};

// Receives one message: its frame into `*frame` and, if `payload` is not
// null, what follows the frame (up to kMaxPayloadBytes) into `*payload`.
// Without `payload`, a message with a payload arrives truncated (MSG_TRUNC),
// which the decoders refuse.
inline Received RecvFrame(int sock, Frame* frame, std::string* payload,
                          int flags) {
  Received out;
  char rest[kMaxPayloadBytes];
  iovec iov[2] = {{frame, sizeof(*frame)}, {rest, sizeof(rest)}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload != nullptr ? 2 : 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  out.envelope.bytes = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  if (out.envelope.bytes < 0) return out;
  out.envelope.msg_flags = msg.msg_flags;
  if (payload != nullptr) {
    const ssize_t after = out.envelope.bytes - ssize_t{sizeof(*frame)};
    payload->assign(rest, after > 0 ? static_cast<size_t>(after) : 0);
  }
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

// Receives one frame that has no payload.
inline Received RecvFrame(int sock, Frame* frame, int flags) {
  return RecvFrame(sock, frame, nullptr, flags);
}

}  // namespace shmbroker::fdchannel

#endif  // SHMBROKER_COMMON_FD_CHANNEL_IO_H_
