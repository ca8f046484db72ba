// Fuzzes how the daemon reads a request: the bytes of a serialized
// shmbroker.v1 request (over gRPC, or as the payload of a call on the fd
// channel, which any local client can send) are parsed, converted to core
// types (server/proto_convert.h, server/page.h) and validated as the
// Registry would (names, share rules, watch prefixes). No input may crash them;
// every refusal is INVALID_ARGUMENT with a message of bounded length (a
// request's own bytes are never echoed whole); and what is accepted says
// exactly what the request said.
//
// Input: one selector byte (which request, modulo 9), then the bytes of the
// serialized message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/access.h"
#include "core/buffer_name.h"
#include "server/page.h"
#include "server/proto_convert.h"
#include "shmbroker/v1/broker.pb.h"
#include "tests/fuzz/fuzz_check.h"

namespace shmbroker {
namespace {

// Far above any message the daemon writes, far below what a request can hold.
constexpr size_t kMaxMessage = 256;

void CheckRefusal(const absl::Status& status) {
  FUZZ_CHECK(absl::IsInvalidArgument(status));
  FUZZ_CHECK(!status.message().empty());
  FUZZ_CHECK(status.message().size() <= kMaxMessage);
  // As the client would read it: the same words, still bounded.
  const grpc::Status wire = ToGrpcStatus(status);
  FUZZ_CHECK(wire.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  FUZZ_CHECK(wire.error_message().size() <= kMaxMessage + 64);
}

void CheckAllocate(const v1::AllocateRequest& request) {
  absl::StatusOr<AllocateSpec> spec = FromProto(request);
  if (!spec.ok()) {
    CheckRefusal(spec.status());
    return;
  }
  FUZZ_CHECK(spec->size == request.size());
  FUZZ_CHECK(spec->name == request.name());
  FUZZ_CHECK(spec->lease == request.lease_id());
  FUZZ_CHECK(spec->zeroed == !request.uninitialized());
  FUZZ_CHECK((spec->backing == Backing::kPosix) ==
             (request.backing() == v1::BACKING_POSIX));
  FUZZ_CHECK(spec->kind.has_value() ==
             (request.kind() != v1::BUFFER_KIND_UNSPECIFIED));
  FUZZ_CHECK(spec->share.size() == static_cast<size_t>(request.share_size()));
  for (size_t i = 0; i < spec->share.size(); ++i) {
    const v1::ShareRule& asked = request.share(static_cast<int>(i));
    FUZZ_CHECK(spec->share[i].id == asked.id());
    FUZZ_CHECK((spec->share[i].mode == AccessMode::kReadWrite) ==
               (asked.mode() == v1::ACCESS_MODE_READ_WRITE));
  }
  // What the Registry checks next, as it would: refusals stay bounded too.
  if (absl::Status s = ValidateShareRules(spec->share); !s.ok()) {
    CheckRefusal(s);
  } else {
    FUZZ_CHECK(spec->share.size() <= kMaxShareRules);
    // The rules come back unchanged in a Buffer (Describe, List, Watch).
    BufferInfo info;
    info.share = spec->share;
    v1::Buffer out;
    ToProto(info, &out);
    absl::StatusOr<std::vector<ShareRule>> again = FromProto(out.share());
    FUZZ_CHECK(again.ok() && *again == spec->share);
  }
  if (!spec->name.empty()) {
    if (absl::Status s = ValidateBufferName(spec->name); !s.ok()) {
      CheckRefusal(s);
    } else {
      FUZZ_CHECK(spec->name.size() <= kMaxBufferNameLength);
    }
  }
}

void CheckAttach(const v1::AttachRequest& request) {
  absl::StatusOr<BufferRef> ref = TargetOf(request);
  if (!ref.ok()) {
    CheckRefusal(ref.status());
  } else if (request.target_case() == v1::AttachRequest::kHandle) {
    FUZZ_CHECK(request.handle() != 0);
  } else {
    FUZZ_CHECK(request.target_case() == v1::AttachRequest::kName);
    if (absl::Status s = ValidateBufferName(request.name()); !s.ok()) {
      CheckRefusal(s);
    }
  }
  absl::StatusOr<AccessRequest> mode = FromProto(request.mode());
  if (!mode.ok()) {
    CheckRefusal(mode.status());
  } else {
    FUZZ_CHECK(request.mode() == v1::ACCESS_MODE_UNSPECIFIED ||
               request.mode() == v1::ACCESS_MODE_READ_ONLY ||
               request.mode() == v1::ACCESS_MODE_READ_WRITE);
  }
  absl::StatusOr<absl::Duration> timeout = FromProto(request.wait_timeout());
  if (!timeout.ok()) {
    CheckRefusal(timeout.status());
    return;
  }
  // An accepted duration prints back as the same duration.
  google::protobuf::Duration back;
  ToProto(*timeout, &back);
  absl::StatusOr<absl::Duration> again = FromProto(back);
  FUZZ_CHECK(again.ok() && *again == *timeout);
}

template <typename Request>
void CheckTarget(const Request& request) {
  absl::StatusOr<BufferRef> ref = TargetOf(request);
  if (!ref.ok()) CheckRefusal(ref.status());
}

// Release names its buffer by handle, or by name when the handle is 0.
void CheckRelease(const v1::ReleaseRequest& request) {
  if (request.handle() == 0 && !request.name().empty()) {
    if (absl::Status s = ValidateBufferName(request.name()); !s.ok()) {
      CheckRefusal(s);
    }
  }
}

// List and ListLeases: a page of at most the largest size, after the
// position the token names.
template <typename Request>
void CheckPage(const Request& request) {
  const PageOptions options;
  absl::StatusOr<Page> page =
      ParsePage(request.page_size(), request.page_token(), options);
  if (!page.ok()) {
    CheckRefusal(page.status());
    return;
  }
  FUZZ_CHECK(page->limit >= 1 && page->limit <= options.max_size);
  FUZZ_CHECK(page->limit == std::min(request.page_size() == 0
                                         ? options.default_size
                                         : request.page_size(),
                                     options.max_size));
}

void CheckGrantLease(const v1::GrantLeaseRequest& request) {
  absl::StatusOr<absl::Duration> ttl = FromProto(request.ttl());
  if (!ttl.ok()) {
    CheckRefusal(ttl.status());
    return;
  }
  google::protobuf::Duration back;
  ToProto(*ttl, &back);
  absl::StatusOr<absl::Duration> again = FromProto(back);
  FUZZ_CHECK(again.ok() && *again == *ttl);
}

// A watch prefix is empty (everything) or a valid name's start.
void CheckWatch(const v1::WatchRequest& request) {
  if (request.prefix().empty()) return;
  if (absl::Status s = ValidateBufferName(request.prefix()); !s.ok()) {
    CheckRefusal(s);
  }
}

// Parses the input as a `Request` and checks it, if it parses.
template <typename Request, typename Check>
void Fuzz(const uint8_t* data, size_t size, Check check) {
  Request request;
  if (request.ParseFromArray(data, static_cast<int>(size))) check(request);
}

}  // namespace
}  // namespace shmbroker

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmbroker;
  if (size < 1) return 0;
  const uint8_t* bytes = data + 1;
  const size_t n = size - 1;
  switch (data[0] % 9) {
    case 0:
      Fuzz<v1::AllocateRequest>(bytes, n, CheckAllocate);
      break;
    case 1:
      Fuzz<v1::AttachRequest>(bytes, n, CheckAttach);
      break;
    case 2:
      Fuzz<v1::DescribeRequest>(bytes, n, CheckTarget<v1::DescribeRequest>);
      break;
    case 3:
      Fuzz<v1::SealRequest>(bytes, n, CheckTarget<v1::SealRequest>);
      break;
    case 4:
      Fuzz<v1::ReleaseRequest>(bytes, n, CheckRelease);
      break;
    case 5:
      Fuzz<v1::ListRequest>(bytes, n, CheckPage<v1::ListRequest>);
      break;
    case 6:
      Fuzz<v1::ListLeasesRequest>(bytes, n, CheckPage<v1::ListLeasesRequest>);
      break;
    case 7:
      Fuzz<v1::GrantLeaseRequest>(bytes, n, CheckGrantLease);
      break;
    default:
      Fuzz<v1::WatchRequest>(bytes, n, CheckWatch);
      break;
  }
  return 0;
}
