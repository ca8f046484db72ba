// The fd channel protocol: the messages between the daemon and a client
// library on the fd channel, and the rules that order them against gRPC
// calls. Header-only, libc and Abseil only; part of the daemon/client
// contract (docs/api.md, "The fd channel").
//
// Why a second socket. gRPC cannot carry file descriptors, so beside the
// gRPC socket P the daemon listens on P.fds, a SOCK_SEQPACKET Unix socket:
// one message is one fixed-size Frame, and a descriptor rides with the frame
// it belongs to (SCM_RIGHTS). Connecting it opens a *client connection*: the
// daemon reads the peer's pid/uid/gid from the kernel (SO_PEERCRED), opens a
// client connection in its registry with a default lease, and greets with a
// Hello carrying the connection's token. The client sends that token as gRPC
// metadata (kConnectionTokenKey) on every call, and the daemon accepts it
// only from the process it was issued to. The socket closing, for any reason
// (exit, crash, SIGKILL), is the daemon's signal that the process is gone.
//
//   daemon -> client  Hello        once, on connect (with the features it
//                                  serves, e.g. "calls")
//   daemon -> client  FdGrant      one per grant that carries an fd
//   daemon -> client  ErrorText    then the daemon closes the channel
//   client -> daemon  Release      drop one hold (one-way)
//   client -> daemon  ForgetArena  "I closed my fd of this arena" (one-way)
//   client -> daemon  Seal         seal a pooled buffer (one-way)
//   client -> daemon  Present      after a daemon restart: "this fd is the
//                                  memory of buffer H, which I held under
//                                  lease L" (one-way, exactly one fd; the
//                                  Resume call that follows reports it)
//   client -> daemon  Call         an Allocate or Attach request (the
//                                  serialized shmbroker.v1 request follows
//                                  the frame), answered by one Reply
//   daemon -> client  Reply        a Call's status and, when OK, its
//                                  serialized response; the grant's fd
//                                  goes before it as for a gRPC reply
//
// Anything else a client sends (a bad size, magic, version or type, or a
// descriptor on any frame but Present) is a protocol error: the daemon answers
// ErrorText and closes the client connection, dropping its holds.
//
// Why calls on the fd channel. A buffer handoff is the product's hot path,
// and on a small machine a gRPC unary call costs several thread hops in
// each process (docs/performance.md, "Handoff"). The two calls that hand
// out memory, Allocate and Attach (waiting or not), may therefore also be
// made here: the same request and response messages and the same checks
// as over gRPC, at the cost of one message each way. The connection is the
// caller's identity (SO_PEERCRED at connect), and frames are applied in
// order, so rule 2 holds by construction. gRPC stays the API for
// everything else and for clients without the library.
//
// Ordering. Three rules make the two sockets behave like one ordered stream:
//
//  1. The fd goes before the reply. A call that grants memory (Allocate,
//     Attach) sends the FdGrant frame first and then the gRPC reply, which
//     names the grant id. So when the client reads the reply, the fd is
//     already waiting; the client takes it by id and keeps any other fds it
//     reads on the way for their own calls (calls may run concurrently).
//
//  2. One-way frames go before the next call. The client counts the
//     one-way frames it has sent and puts the count on every call
//     (kFramesSentKey). Before handling a call, the daemon applies frames
//     from that connection until it has applied that many, so a Release sent
//     before a call is applied before it, without a round trip of its own.
//     Without the count, the daemon reads everything waiting. A Seal
//     rides this rule too: the producer does not wait for it, and its next
//     call (or its exit: the daemon reads what is queued before the hang-up)
//     finds the buffer sealed. Only a seal that cannot fail once the
//     library has checked it goes one-way: a pooled buffer the client holds
//     writable, which is sealed in the daemon's books alone. A dedicated
//     memfd buffer is sealed by the kernel, which refuses while anyone maps
//     it writable, so that seal needs the Seal RPC's answer.
//
//  3. An arena fd is sent once per connection and mode, and a forget never
//     overtakes a grant. A pooled buffer's grant carries its arena's fd only
//     the first time the connection needs that arena (ArenaKey); later
//     grants say grant id 0 and the client uses the mapping it has. When the
//     client unmaps an arena it sends ForgetArena, and the daemon sends the
//     fd again next time. The client holds a lock shared from sending any
//     call that may grant pooled memory until the grant's arena is found,
//     and exclusively while it forgets arenas, so the daemon is never told
//     to forget an arena whose fd a grant in flight relies on.
#ifndef SHMBROKER_COMMON_FD_CHANNEL_PROTOCOL_H_
#define SHMBROKER_COMMON_FD_CHANNEL_PROTOCOL_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace shmbroker::fdchannel {

inline constexpr uint32_t kMagic = 0x424d4853;  // "SHMB" little-endian
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kTokenBytes = 16;
inline constexpr size_t kTextBytes = 128;
// The most a Call or Reply carries after its frame. A request that does not
// fit goes over gRPC instead (names and share rules are bounded far below).
inline constexpr size_t kMaxPayloadBytes = 4096;

// gRPC metadata on every call of a client connection: its token (hex).
inline constexpr char kConnectionTokenKey[] = "shmbroker-connection";
// Optional gRPC metadata: how many one-way frames (Release, ForgetArena,
// Seal) the client has sent on this connection so far, in decimal (rule 2).
inline constexpr char kFramesSentKey[] = "shmbroker-frames-sent";

// How the ErrorText of a client connection the daemon closed on purpose
// begins: its default lease ended, or the client broke the protocol. The
// library does not resume such a connection; it resumes one that closed
// for any other reason (the daemon stopped or died) once a daemon is back.
inline constexpr char kClosedOnPurpose[] =
    "shmbrokerd closed this client connection";
inline constexpr char kProtocolError[] = "protocol error on the fd channel";

using Token = std::array<uint8_t, kTokenBytes>;

inline std::string TokenToHex(const Token& token) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * kTokenBytes);
  for (uint8_t b : token) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

// One pooled arena's fd in one mode: a connection holds at most one of each.
struct ArenaKey {
  uint64_t arena_id = 0;
  bool writable = false;

  friend bool operator==(const ArenaKey&, const ArenaKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ArenaKey& key) {
    return H::combine(std::move(h), key.arena_id, key.writable);
  }
};

// What a daemon serves beyond the frames every version has, named in its
// Hello (space-separated): a client uses a feature only if it is named, so
// that a newer library works with an older daemon.
inline constexpr char kFeatureCalls[] = "calls";  // Call frames (kCall)

// The messages, one struct each.
struct Hello {
  uint64_t connection_id = 0;
  uint64_t default_lease = 0;
  Token token{};
  std::string features;  // in the frame's text; empty from older daemons

  bool Serves(absl::string_view feature) const {
    for (absl::string_view rest = features; !rest.empty();) {
      const size_t end = std::min(rest.find(' '), rest.size());
      if (rest.substr(0, end) == feature) return true;
      rest.remove_prefix(std::min(end + 1, rest.size()));
    }
    return false;
  }
};
struct FdGrant {  // the fd itself travels with the frame
  uint64_t grant_id = 0;
  uint64_t handle = 0;
};
struct ErrorText {
  std::string text;
};
struct Release {
  uint64_t handle = 0;
  uint64_t lease = 0;  // 0: the daemon picks, as for the Release RPC
};
struct ForgetArena {
  ArenaKey arena;
};
struct Seal {
  uint64_t handle = 0;
};
struct Present {  // the fd itself travels with the frame
  uint64_t handle = 0;
  uint64_t lease = 0;
};
// The calls that may go over the fd channel; the payload is the method's
// serialized shmbroker.v1 request.
enum class CallMethod : uint16_t { kAllocate = 1, kAttach = 2 };
struct Call {
  uint64_t id = 0;  // chosen by the client, echoed by the Reply
  CallMethod method = CallMethod::kAllocate;
  // How long the client waits for the Reply: the call's deadline, as gRPC
  // would carry it.
  uint64_t timeout_ms = 0;
  std::string payload;
};
struct Reply {
  uint64_t id = 0;
  absl::StatusCode code = absl::StatusCode::kOk;
  // OK: the serialized response. Else: the status message.
  std::string payload;
};

// What each side accepts from the other.
using FromDaemon = std::variant<Hello, FdGrant, ErrorText, Reply>;
using FromClient = std::variant<Release, ForgetArena, Seal, Present, Call>;

enum class FrameType : uint16_t {
  kHello = 1,
  kFd = 2,
  kError = 3,
  kRelease = 4,
  kForgetArena = 5,
  kSeal = 6,
  kPresent = 7,
  kCall = 8,
  kReply = 9,
};

// The wire form: 168 bytes, host byte order (both ends are on one host),
// followed, for Call and Reply only, by their payload in the same message.
// Build one with Encode and read one with Decode*; the two payload words
// (and, for Call and Reply, the token bytes) mean different things per
// type, so nothing else should touch them.
struct Frame {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  FrameType type = FrameType::kError;
  uint64_t word0 = 0;
  uint64_t word1 = 0;
  uint8_t token[kTokenBytes] = {};
  char text[kTextBytes] = {};  // NUL-terminated
};
static_assert(sizeof(Frame) == 168);

inline Frame MakeFrame(FrameType type, uint64_t word0, uint64_t word1) {
  Frame f;
  f.type = type;
  f.word0 = word0;
  f.word1 = word1;
  return f;
}

inline Frame Encode(const Hello& m) {
  Frame f = MakeFrame(FrameType::kHello, m.connection_id, m.default_lease);
  std::memcpy(f.token, m.token.data(), kTokenBytes);
  std::strncpy(f.text, m.features.c_str(), kTextBytes - 1);
  return f;
}
inline Frame Encode(const FdGrant& m) {
  return MakeFrame(FrameType::kFd, m.grant_id, m.handle);
}
inline Frame Encode(const ErrorText& m) {
  Frame f = MakeFrame(FrameType::kError, 0, 0);
  std::strncpy(f.text, m.text.c_str(), kTextBytes - 1);
  return f;
}
inline Frame Encode(const Release& m) {
  return MakeFrame(FrameType::kRelease, m.handle, m.lease);
}
inline Frame Encode(const ForgetArena& m) {
  return MakeFrame(FrameType::kForgetArena, m.arena.arena_id,
                   m.arena.writable ? 1 : 0);
}
inline Frame Encode(const Seal& m) {
  return MakeFrame(FrameType::kSeal, m.handle, 0);
}
inline Frame Encode(const Present& m) {
  return MakeFrame(FrameType::kPresent, m.handle, m.lease);
}

// A Call's or Reply's token bytes: [0, 8) a Call's timeout_ms, [8, 12) the
// payload's length.
inline void PutCallWords(Frame& f, uint64_t timeout_ms, uint32_t payload) {
  std::memcpy(f.token, &timeout_ms, sizeof(timeout_ms));
  std::memcpy(f.token + 8, &payload, sizeof(payload));
}
inline uint64_t CallTimeoutMs(const Frame& f) {
  uint64_t v = 0;
  std::memcpy(&v, f.token, sizeof(v));
  return v;
}
inline uint32_t PayloadBytes(const Frame& f) {
  uint32_t v = 0;
  std::memcpy(&v, f.token + 8, sizeof(v));
  return v;
}
// The frame of a Call or Reply; its payload is sent after it (SendMessage).
inline Frame Encode(const Call& m) {
  Frame f = MakeFrame(FrameType::kCall, m.id, static_cast<uint64_t>(m.method));
  PutCallWords(f, m.timeout_ms, static_cast<uint32_t>(m.payload.size()));
  return f;
}
inline Frame Encode(const Reply& m) {
  Frame f = MakeFrame(FrameType::kReply, m.id, static_cast<uint64_t>(m.code));
  PutCallWords(f, 0, static_cast<uint32_t>(m.payload.size()));
  return f;
}
// What goes after a message's frame (empty but for Call and Reply).
template <typename M>
absl::string_view PayloadOf(const M& m) {
  if constexpr (std::is_same_v<M, Call> || std::is_same_v<M, Reply>) {
    return m.payload;
  } else {
    return {};
  }
}

// How a frame arrived: recvmsg's byte count (frame and payload) and flags,
// and how many descriptors came with it (fd_channel_io.h fills this in).
struct Envelope {
  ssize_t bytes = 0;
  int msg_flags = 0;
  int fd_count = 0;
};

}  // namespace shmbroker::fdchannel

#endif  // SHMBROKER_COMMON_FD_CHANNEL_PROTOCOL_H_
