// BrokerService: Watch. A WatchReactor is a watcher in the Registry
// (core/watch_hub.h) and holds no thread: the Registry wakes it, after its
// lock is released, when its queue gets an event, and it writes one event at
// a time (one write in flight per stream), taking the next when a write
// completes. It ends when the call is cancelled (the client went, or the
// daemon stops), or, for a watcher that fell behind, with a lost event.
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/broker_service.h"
#include "server/reactor_order.h"

namespace shmbroker {

// One Watch stream. Thread-safe: wakes come from whichever thread changed a
// buffer, write completions and cancellation from gRPC's. Lock order: the
// queue's wake lock, then mu_, then the queue's own.
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  explicit WatchReactor(BrokerService* service)
      : service_(service), start_(absl::Now()) {}

  // Registers the watcher and writes what its queue already holds (the
  // changes after its revision), or finishes with why it cannot watch.
  void Start(const WatchSpec& spec) {
    absl::StatusOr<WatchHub::Watch> watch =
        service_->registry_->Watch(spec, [this] { Pump(); });
    if (!watch.ok()) {
      {
        absl::MutexLock lock(&mu_);
        done_ = true;
      }
      End(watch.status());
      return;
    }
    Step step;
    {
      absl::MutexLock lock(&mu_);
      id_ = watch->id;
      queue_ = std::move(watch->queue);
      // Tells the client the watcher is registered: no later change is
      // missed (Client::Watch returns then).
      HandingToGrpc(this);
      StartSendInitialMetadata();
      step = NextLocked();
    }
    Take(step);
  }

  // Finishes a call refused before it became a watcher.
  void Refuse(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    End(status);
  }

  void OnWriteDone(bool ok) override {
    ReactionBegins(this);
    Step step;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) service_->metrics_->WatchEventSent();
      if (done_) return;
      if (!ok || cancelled_) {
        done_ = true;
        step.finish = absl::CancelledError("the Watch was cancelled");
      } else {
        step = NextLocked();
      }
    }
    Take(step);
  }

  void OnCancel() override {
    ReactionBegins(this);
    WatcherId id = 0;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = id_;
    }
    service_->registry_->CancelWatch(id);
    {
      absl::MutexLock lock(&mu_);
      // A write in flight finishes the call when it completes.
      if (done_ || writing_) return;
      done_ = true;
    }
    End(absl::CancelledError("the Watch was cancelled"));
  }

  void OnDone() override {
    ReactionBegins(this);
    std::shared_ptr<WatchQueue> queue;
    WatcherId id = 0;
    {
      absl::MutexLock lock(&mu_);
      queue = queue_;
      id = id_;
    }
    if (queue != nullptr) queue->Detach();  // no wake reaches `this` now
    service_->registry_->CancelWatch(id);
    delete this;
  }

 private:
  // What to do once mu_ is released: a status to finish with (after the
  // lost event, if `lost`).
  struct Step {
    std::optional<absl::Status> finish;
    bool lost = false;
  };

  // The Registry's wake: the queue got its first event, or was lost.
  void Pump() {
    Step step;
    {
      absl::MutexLock lock(&mu_);
      if (queue_ == nullptr || writing_ || done_ || cancelled_) return;
      step = NextLocked();
    }
    Take(step);
  }

  // Starts writing the next queued event, if any.
  Step NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step;
    std::optional<WatchEvent> event = queue_->Pop();
    if (!event.has_value()) return step;
    ToProto(*event, &out_);
    writing_ = true;
    if (event->type == WatchEventType::kLost) {
      done_ = true;
      step.lost = true;
      step.finish = queue_->LostStatus();
    } else {
      HandingToGrpc(this);
      StartWrite(&out_);
    }
    return step;
  }

  // Not under mu_: finishing may run OnDone, which deletes `this`.
  void Take(const Step& step) {
    if (!step.finish.has_value()) return;
    if (!step.lost) {
      End(*step.finish);
      return;
    }
    service_->metrics_->WatcherLost();
    service_->metrics_->RpcDone("Watch", step.finish->code(),
                                absl::Now() - start_);
    service_->metrics_->CountRefusal(*step.finish);
    HandingToGrpc(this);
    StartWriteAndFinish(&out_, grpc::WriteOptions(),
                        ToGrpcStatus(*step.finish));
  }

  void End(const absl::Status& status) {
    service_->metrics_->RpcDone("Watch", status.code(), absl::Now() - start_);
    service_->metrics_->CountRefusal(status);
    HandingToGrpc(this);
    Finish(ToGrpcStatus(status));
  }

  BrokerService* const service_;
  const absl::Time start_;
  absl::Mutex mu_;
  WatcherId id_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<WatchQueue> queue_ ABSL_GUARDED_BY(mu_);
  v1::WatchEvent out_ ABSL_GUARDED_BY(mu_);  // the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // Finish called or about to be
};

grpc::ServerWriteReactor<v1::WatchEvent>* BrokerService::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* request) {
  auto* reactor = new WatchReactor(this);
  // Identity is the gRPC connection's; a client connection, if the call
  // names one, is what the watcher limit counts by.
  absl::StatusOr<Caller> caller = Identify(ctx, /*need_connection=*/false);
  if (!caller.ok()) {
    reactor->Refuse(caller.status());
    return reactor;
  }
  WatchSpec spec;
  spec.watcher = caller->identity;
  spec.prefix = request->prefix();
  spec.after_revision = request->after_revision();
  spec.scope = caller->connection != nullptr
                   ? absl::StrCat("client connection ", caller->connection->id)
                   : absl::StrCat("gRPC connection ", ctx->peer());
  reactor->Start(spec);
  return reactor;
}

}  // namespace shmbroker
