// Fuzzes the fd channel's decoders (common/fd_channel_protocol.h): both
// sides read frames from a peer they do not trust, so no input may crash
// them, every accepted frame must satisfy the checks the decoder claims to
// make, and what they accept must survive Encode -> Decode unchanged (the
// daemon and the client speak through exactly these two functions).
//
// Input: 3 bytes of envelope, then up to one frame (zero-padded), then the
// payload that follows it (a Call's or Reply's):
//   [0] msg_flags bits: 1 MSG_TRUNC, 2 MSG_CTRUNC, 4 MSG_EOR, 8 MSG_OOB
//   [1] fd_count, as a signed byte
//   [2] bytes: 0x80 means -1 (recvmsg failed), else 168 + the payload's
//       size + signed byte
#include "common/fd_channel_decode.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fd_channel_protocol.h"
#include "tests/fuzz/fuzz_check.h"

namespace shmbroker::fdchannel {
namespace {

constexpr Envelope kClean{
    .bytes = sizeof(Frame), .msg_flags = 0, .fd_count = 0};

Envelope EnvelopeFrom(const uint8_t* header, size_t payload) {
  Envelope envelope;
  const uint8_t flags = header[0];
  if (flags & 1) envelope.msg_flags |= MSG_TRUNC;
  if (flags & 2) envelope.msg_flags |= MSG_CTRUNC;
  if (flags & 4) envelope.msg_flags |= MSG_EOR;
  if (flags & 8) envelope.msg_flags |= MSG_OOB;
  envelope.fd_count = static_cast<int8_t>(header[1]);
  envelope.bytes = header[2] == 0x80
                       ? -1
                       : static_cast<ssize_t>(sizeof(Frame) + payload) +
                             static_cast<int8_t>(header[2]);
  return envelope;
}

// What survives a trip through the wire: Encode keeps at most
// kTextBytes - 1 characters of an error text, up to its first NUL.
std::string WireText(const std::string& text) {
  return std::string(text.c_str(), strnlen(text.c_str(), kTextBytes - 1));
}

bool Same(const FromClient& a, const FromClient& b) {
  if (a.index() != b.index()) return false;
  if (const auto* ra = std::get_if<Release>(&a)) {
    const auto& rb = std::get<Release>(b);
    return ra->handle == rb.handle && ra->lease == rb.lease;
  }
  if (const auto* sa = std::get_if<Seal>(&a)) {
    return sa->handle == std::get<Seal>(b).handle;
  }
  if (const auto* pa = std::get_if<Present>(&a)) {
    const auto& pb = std::get<Present>(b);
    return pa->handle == pb.handle && pa->lease == pb.lease;
  }
  if (const auto* ca = std::get_if<Call>(&a)) {
    const auto& cb = std::get<Call>(b);
    return ca->id == cb.id && ca->method == cb.method &&
           ca->timeout_ms == cb.timeout_ms && ca->payload == cb.payload;
  }
  return std::get<ForgetArena>(a).arena == std::get<ForgetArena>(b).arena;
}

bool Same(const FromDaemon& a, const FromDaemon& b) {
  if (a.index() != b.index()) return false;
  if (const auto* ha = std::get_if<Hello>(&a)) {
    const auto& hb = std::get<Hello>(b);
    return ha->connection_id == hb.connection_id &&
           ha->default_lease == hb.default_lease && ha->token == hb.token &&
           WireText(ha->features) == hb.features;
  }
  if (const auto* ga = std::get_if<FdGrant>(&a)) {
    const auto& gb = std::get<FdGrant>(b);
    return ga->grant_id == gb.grant_id && ga->handle == gb.handle;
  }
  if (const auto* ra = std::get_if<Reply>(&a)) {
    const auto& rb = std::get<Reply>(b);
    return ra->id == rb.id && ra->code == rb.code && ra->payload == rb.payload;
  }
  // An error text is compared as it comes off the wire (see WireText and
  // tests/fuzz/regressions/fd_channel_decode/unterminated_error_text).
  return WireText(std::get<ErrorText>(a).text) == std::get<ErrorText>(b).text;
}

void CheckFromClient(const Envelope& envelope, const Frame& frame,
                     absl::string_view payload) {
  absl::StatusOr<FromClient> message =
      DecodeFromClient(envelope, frame, payload);
  if (!message.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(message.status()));
    return;
  }
  // What the decoder promises to have checked: a descriptor comes with a
  // Present frame, exactly one, and with no other.
  const bool present = std::holds_alternative<Present>(*message);
  FUZZ_CHECK(present ? envelope.fd_count == 1 : envelope.fd_count <= 0);
  // Only a call has bytes after its frame, at most kMaxPayloadBytes.
  const bool call = std::holds_alternative<Call>(*message);
  FUZZ_CHECK(call || payload.empty());
  FUZZ_CHECK(payload.size() <= kMaxPayloadBytes);
  FUZZ_CHECK(envelope.bytes ==
             static_cast<ssize_t>(sizeof(Frame) + payload.size()));
  FUZZ_CHECK((envelope.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0);
  FUZZ_CHECK(frame.magic == kMagic && frame.version == kVersion);
  FUZZ_CHECK(
      frame.type == FrameType::kRelease ||
      frame.type == FrameType::kForgetArena || frame.type == FrameType::kSeal ||
      frame.type == FrameType::kPresent || frame.type == FrameType::kCall);

  const Frame encoded =
      std::visit([](const auto& m) { return Encode(m); }, *message);
  const absl::string_view sent =
      std::visit([](const auto& m) { return PayloadOf(m); }, *message);
  Envelope clean = kClean;
  clean.bytes += static_cast<ssize_t>(sent.size());
  if (present) clean.fd_count = 1;
  absl::StatusOr<FromClient> again = DecodeFromClient(clean, encoded, sent);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(Same(*message, *again));
}

void CheckFromDaemon(const Envelope& envelope, const Frame& frame,
                     absl::string_view payload) {
  absl::StatusOr<FromDaemon> message =
      DecodeFromDaemon(envelope, frame, payload);
  if (!message.ok()) {
    FUZZ_CHECK(absl::IsInternal(message.status()));
    return;
  }
  const bool reply = std::holds_alternative<Reply>(*message);
  FUZZ_CHECK(reply || payload.empty());
  FUZZ_CHECK(payload.size() <= kMaxPayloadBytes);
  FUZZ_CHECK(envelope.bytes ==
             static_cast<ssize_t>(sizeof(Frame) + payload.size()));
  // A reply carries no descriptor: its grant's fd came before it.
  FUZZ_CHECK(!reply || envelope.fd_count == 0);
  FUZZ_CHECK(frame.magic == kMagic && frame.version == kVersion);
  // A grant without exactly one descriptor would leave the client waiting
  // for an fd that never comes.
  FUZZ_CHECK(!std::holds_alternative<FdGrant>(*message) ||
             envelope.fd_count == 1);
  if (const auto* error = std::get_if<ErrorText>(&*message)) {
    FUZZ_CHECK(error->text.size() <= kTextBytes);
    FUZZ_CHECK(error->text.find('\0') == std::string::npos);
  }

  const Frame encoded =
      std::visit([](const auto& m) { return Encode(m); }, *message);
  const absl::string_view sent =
      std::visit([](const auto& m) { return PayloadOf(m); }, *message);
  Envelope clean = kClean;
  clean.bytes += static_cast<ssize_t>(sent.size());
  if (std::holds_alternative<FdGrant>(*message)) clean.fd_count = 1;
  absl::StatusOr<FromDaemon> again = DecodeFromDaemon(clean, encoded, sent);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(Same(*message, *again));
}

}  // namespace
}  // namespace shmbroker::fdchannel

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmbroker::fdchannel;
  constexpr size_t kHeader = 3;
  if (size < kHeader) return 0;
  Frame frame;
  std::memset(&frame, 0, sizeof(frame));
  std::memcpy(&frame, data + kHeader, std::min(size - kHeader, sizeof(frame)));
  const size_t rest = kHeader + sizeof(frame);
  const absl::string_view payload =
      size > rest ? absl::string_view(
                        reinterpret_cast<const char*>(data) + rest, size - rest)
                  : absl::string_view();
  const Envelope envelope = EnvelopeFrom(data, payload.size());
  CheckFromClient(envelope, frame, payload);
  CheckFromDaemon(envelope, frame, payload);
  return 0;
}
