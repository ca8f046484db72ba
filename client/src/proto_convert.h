// Conversions between the client library's value types (shmbroker/types.h)
// and shmbroker.v1 messages, mirroring server/proto_convert.h on the other
// side of the wire. This is the client's edge: nothing else in client/
// reads or fills a message's fields one by one. Pure functions; a value the
// library does not know (a newer daemon's enum) maps to the default.
#ifndef SHMBROKER_CLIENT_SRC_PROTO_CONVERT_H_
#define SHMBROKER_CLIENT_SRC_PROTO_CONVERT_H_

#include "absl/time/time.h"
#include "shmbroker/types.h"
#include "shmbroker/v1/broker.pb.h"
#include "shmbroker/watcher.h"

namespace shmbroker::client {

// Requests.
v1::Backing ToProto(Backing backing);
v1::AccessMode ToProto(Access access);
v1::BufferKind ToProto(Kind kind);
void ToProto(const ShareRule& rule, v1::ShareRule* out);
void ToProto(absl::Duration duration, google::protobuf::Duration* out);
v1::AllocateRequest ToProto(const AllocateOptions& options);

// Replies.
absl::Duration FromProto(const google::protobuf::Duration& duration);
absl::Time FromProto(const google::protobuf::Timestamp& time);
ShareRule FromProto(const v1::ShareRule& rule);
BufferInfo FromProto(const v1::Buffer& buffer);
LeaseInfo FromProto(const v1::Lease& lease);
// The lease with the holds under it.
LeaseInfo FromProto(const v1::LeaseTimeToLiveResponse& response);
LatencySummary FromProto(const v1::ReclaimLatency& latency);
PoolStatus FromProto(const v1::PoolStatus& pool);
DaemonStatus FromProto(const v1::StatusResponse& status);
WatchEvent FromProto(const v1::WatchEvent& event);

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_PROTO_CONVERT_H_
