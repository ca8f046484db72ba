// Decoding the fd channel's frames (common/fd_channel_protocol.h): what a
// received message means, or why it is a protocol error. Header-only, libc
// and Abseil only. Trusts nothing in the frame: both sides (and the fuzz
// target tests/fuzz/fd_channel_decode.cc) feed it whatever arrived.
#ifndef SHMBROKER_COMMON_FD_CHANNEL_DECODE_H_
#define SHMBROKER_COMMON_FD_CHANNEL_DECODE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/fd_channel_protocol.h"

namespace shmbroker::fdchannel {

// A frame a client sent, or INVALID_ARGUMENT naming what was wrong with it
// (a protocol error: the daemon closes the connection).
// Whether `envelope` is exactly `f` and the payload it declares.
inline bool WholeMessage(const Envelope& envelope, const Frame& f,
                         absl::string_view payload) {
  const bool with_payload =
      f.type == FrameType::kCall || f.type == FrameType::kReply;
  const size_t declared = with_payload ? PayloadBytes(f) : 0;
  return envelope.bytes >= static_cast<ssize_t>(sizeof(Frame)) &&
         declared <= kMaxPayloadBytes && payload.size() == declared &&
         static_cast<size_t>(envelope.bytes) == sizeof(Frame) + declared;
}

// `payload`: the bytes that came after the frame.
inline absl::StatusOr<FromClient> DecodeFromClient(
    const Envelope& envelope, const Frame& f, absl::string_view payload = {}) {
  // Only a Present frame carries a descriptor, and exactly one.
  const int fds_expected =
      envelope.bytes == sizeof(Frame) && f.type == FrameType::kPresent ? 1 : 0;
  if (envelope.fd_count != fds_expected ||
      envelope.bytes < static_cast<ssize_t>(sizeof(Frame)) ||
      !WholeMessage(envelope, f, payload) ||
      (envelope.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
      f.magic != kMagic || f.version != kVersion) {
    // The client sees at most kTextBytes of it: what it sent comes first.
    return absl::InvalidArgumentError(absl::StrFormat(
        "protocol error on the fd channel: got %d bytes with %d descriptors, "
        "expected a %d-byte frame (or a call) of version %d with %d",
        envelope.bytes, envelope.fd_count, sizeof(Frame), kVersion,
        fds_expected));
  }
  switch (f.type) {
    case FrameType::kRelease:
      return Release{f.word0, f.word1};
    case FrameType::kForgetArena:
      if (f.word1 > 1) break;
      return ForgetArena{ArenaKey{f.word0, f.word1 == 1}};
    case FrameType::kSeal:
      if (f.word1 != 0) break;
      return Seal{f.word0};
    case FrameType::kPresent:
      return Present{f.word0, f.word1};
    case FrameType::kCall:
      if (f.word1 != static_cast<uint64_t>(CallMethod::kAllocate) &&
          f.word1 != static_cast<uint64_t>(CallMethod::kAttach)) {
        break;
      }
      return Call{f.word0, static_cast<CallMethod>(f.word1), CallTimeoutMs(f),
                  std::string(payload)};
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "protocol error on the fd channel: frame type %d is not one a client "
      "may send (release, forget-arena, seal, present, call of allocate or "
      "attach)",
      static_cast<int>(f.type)));
}

// A frame the daemon sent, or an error naming what was wrong with it.
inline absl::StatusOr<FromDaemon> DecodeFromDaemon(
    const Envelope& envelope, const Frame& f, absl::string_view payload = {}) {
  if (!WholeMessage(envelope, f, payload) ||
      (envelope.msg_flags & MSG_TRUNC) != 0 || f.magic != kMagic ||
      f.version != kVersion) {
    return absl::InternalError(absl::StrFormat(
        "unexpected frame on the fd channel (%d bytes): not a shmbrokerd of "
        "protocol version %d",
        envelope.bytes, kVersion));
  }
  switch (f.type) {
    case FrameType::kHello: {
      Hello m{f.word0, f.word1, {}, {}};
      std::memcpy(m.token.data(), f.token, kTokenBytes);
      // Older daemons leave the text zeroed: no features.
      m.features = std::string(f.text, strnlen(f.text, kTextBytes - 1));
      return m;
    }
    case FrameType::kFd:
      if (envelope.fd_count != 1) break;
      return FdGrant{f.word0, f.word1};
    case FrameType::kError:
      // At most kTextBytes - 1: what Encode sends (a peer that leaves out
      // the NUL gets its text cut there, as if it had sent one).
      return ErrorText{std::string(f.text, strnlen(f.text, kTextBytes - 1))};
    case FrameType::kReply:
      if (envelope.fd_count != 0 || f.word1 > 16) break;  // absl codes: 0-16
      return Reply{f.word0, static_cast<absl::StatusCode>(f.word1),
                   std::string(payload)};
    default:
      break;
  }
  return absl::InternalError(absl::StrFormat(
      "unexpected frame on the fd channel: type %d with %d descriptors",
      static_cast<int>(f.type), envelope.fd_count));
}

}  // namespace shmbroker::fdchannel

#endif  // SHMBROKER_COMMON_FD_CHANNEL_DECODE_H_
