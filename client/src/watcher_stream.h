// Watcher::Stream: the gRPC side of a Watcher (shmbroker/watcher.h), a
// client read reactor that queues the events it reads. Its owner cancels it
// and waits for gRPC to be done with it (AwaitDone) before destroying it,
// so that nothing of the call is torn down on gRPC's threads. Internal to
// the client library. Thread-safe.
#ifndef SHMBROKER_CLIENT_SRC_WATCHER_STREAM_H_
#define SHMBROKER_CLIENT_SRC_WATCHER_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shmbroker/v1/broker.grpc.pb.h"
#include "shmbroker/watcher.h"

namespace shmbroker::client {

class Watcher::Stream final : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  // `prepare` adds the call's metadata; `map` turns the final status into
  // the library's.
  Stream(std::unique_ptr<v1::Broker::Stub> stub,
         std::function<void(grpc::ClientContext*)> prepare,
         std::function<absl::Status(const grpc::Status&)> map);
  void Start(const v1::WatchRequest& request);
  // OK once the daemon has registered the watcher, or why it refused.
  absl::Status AwaitStarted(absl::Time deadline);
  absl::StatusOr<WatchEvent> Next(absl::Time deadline);
  void Cancel();
  // Until gRPC has called OnDone.
  void AwaitDone();

  void OnReadInitialMetadataDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  const std::unique_ptr<v1::Broker::Stub> stub_;
  const std::function<absl::Status(const grpc::Status&)> map_;
  grpc::ClientContext ctx_;
  v1::WatchEvent in_;  // the read in flight
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);  // set by OnDone
};

}  // namespace shmbroker::client

#endif  // SHMBROKER_CLIENT_SRC_WATCHER_STREAM_H_
