// Conversions between core types and shmbroker.v1 messages, and from
// absl::Status to grpc::Status. This is the edge: nothing else in server/
// translates codes or fields.
#ifndef SHMBROKER_SERVER_PROTO_CONVERT_H_
#define SHMBROKER_SERVER_PROTO_CONVERT_H_

#include <grpcpp/support/status.h>

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/access.h"
#include "core/memory_object.h"
#include "core/registry.h"
#include "server/reclaim_latency.h"
#include "shmbroker/v1/broker.pb.h"

namespace shmbroker {

grpc::Status ToGrpcStatus(const absl::Status& status);

absl::StatusOr<Backing> FromProto(v1::Backing backing);
absl::StatusOr<std::vector<ShareRule>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::ShareRule>& rules);
absl::StatusOr<AccessRequest> FromProto(v1::AccessMode mode);
// nullopt for UNSPECIFIED (the daemon's choice).
absl::StatusOr<std::optional<BufferKind>> FromProto(v1::BufferKind kind);
absl::StatusOr<AllocateSpec> FromProto(const v1::AllocateRequest& request);
// The buffer a request's `target` oneof (handle or name) names.
template <typename Request>
absl::StatusOr<BufferRef> TargetOf(const Request& request) {
  switch (request.target_case()) {
    case Request::kHandle:
      if (request.handle() == 0) {
        return absl::InvalidArgumentError("bad handle: 0");
      }
      return BufferRef::ByHandle(request.handle());
    case Request::kName:
      return BufferRef::ByName(request.name());
    default:
      return absl::InvalidArgumentError(
          "no buffer named: set either handle or name");
  }
}

void ToProto(const BufferInfo& info, v1::Buffer* out);
v1::AccessMode ToProto(AccessMode mode);
void ToProto(absl::Time time, google::protobuf::Timestamp* out);
void ToProto(absl::Duration duration, google::protobuf::Duration* out);
// INVALID_ARGUMENT for a Duration that breaks the proto's own rules.
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d);
// `now` turns the deadline into the remaining TTL.
void ToProto(const LeaseInfo& info, absl::Time now, v1::Lease* out);
void ToProto(const LatencySummary& summary, v1::ReclaimLatency* out);
void ToProto(const PooledAllocatorStats& stats, v1::PoolStatus* out);
// The registry's figures in a StatusResponse.
void ToProto(const RegistryStats& stats, v1::StatusResponse* out);
v1::ReleaseReason ToProto(ReclaimReason reason);
void ToProto(const WatchEvent& event, v1::WatchEvent* out);
void ToProto(const TenantUsage& usage, v1::TenantUsage* out);

}  // namespace shmbroker

#endif  // SHMBROKER_SERVER_PROTO_CONVERT_H_
