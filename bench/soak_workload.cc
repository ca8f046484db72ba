#include "bench/soak_workload.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "shmbroker/client.h"

namespace shmbroker::bench {
namespace {

constexpr size_t kMaxHeld = 16;
constexpr size_t kMaxLeases = 4;

class Workload {
 public:
  Workload(client::Client& c, uint64_t seed) : c_(c), random_(seed) {}

  // One operation, chosen at random; false on an unexpected error.
  bool Step() {
    switch (random_() % 10) {
      case 0:
      case 1:
        return Keep(Allocate(client::Kind::kPooled, 64 << (random_() % 11)));
      case 2:
        return Keep(
            Allocate(client::Kind::kDedicated, 4096 << (random_() % 6)));
      case 3: {
        client::AllocateOptions o = Options(client::Kind::kDedicated, 8192);
        o.backing = client::Backing::kPosix;
        o.name = NextName();
        return Check("posix", c_.Allocate(o).status());  // dropped at once
      }
      case 4:
        return SealAndWait();
      case 5:
        return AttachHeld();
      case 6:
        return ReleaseOne();
      case 7:
        return Lease();
      case 8: {
        // A wait that ends at its deadline: nothing makes this buffer.
        client::WaitOptions wait;
        wait.timeout = absl::Milliseconds(20);
        auto never = c_.AttachWhen(NextName(), wait);
        return never.status().code() == absl::StatusCode::kDeadlineExceeded ||
               Check("wait", never.status());
      }
      default:
        return ReleaseOne();
    }
  }

 private:
  client::AllocateOptions Options(client::Kind kind, uint64_t size) {
    client::AllocateOptions o;
    o.kind = kind;
    o.size = size;
    if (!leases_.empty() && random_() % 3 == 0) {
      o.lease_id = leases_[random_() % leases_.size()];
    }
    return o;
  }

  absl::StatusOr<Buffer> Allocate(client::Kind kind, uint64_t size) {
    absl::StatusOr<Buffer> b = c_.Allocate(Options(kind, size));
    if (b.ok()) std::memset(b->data(), 0x5a, std::min<size_t>(b->size(), 4096));
    return b;
  }

  std::string NextName() {
    return absl::StrCat("soak-", ::getpid(), "-", ++names_);
  }

  bool Keep(absl::StatusOr<Buffer> b) {
    if (!Check("allocate", b.status())) return false;
    held_.push_back(std::move(*b));
    while (held_.size() > kMaxHeld) held_.pop_front();  // one-way Release
    return true;
  }

  // Producer and consumer in one process: allocate a named buffer, seal it,
  // and wait for it sealed (already, so the wait ends at once).
  bool SealAndWait() {
    client::AllocateOptions o = Options(
        random_() % 2 ? client::Kind::kPooled : client::Kind::kDedicated, 4096);
    o.name = NextName();
    absl::StatusOr<Buffer> b = c_.Allocate(o);
    if (!Check("allocate", b.status())) return false;
    if (!Check("seal", b->Seal())) return false;
    client::WaitOptions wait;
    wait.until = client::WaitOptions::Until::kSealed;
    wait.timeout = absl::Seconds(10);
    absl::StatusOr<Buffer> got = c_.AttachWhen(o.name, wait);
    if (!Check("wait", got.status())) return false;
    return Check("release", got->Release());  // by RPC; b goes one-way
  }

  bool AttachHeld() {
    if (held_.empty()) return true;
    const Buffer& b = held_[random_() % held_.size()];
    absl::StatusOr<Buffer> again = c_.AttachHandle(b.handle());
    // The lease it was under may have ended meanwhile.
    return again.ok() || again.status().code() == absl::StatusCode::kNotFound ||
           Check("attach", again.status());
  }

  bool ReleaseOne() {
    if (held_.empty()) return true;
    const size_t i = random_() % held_.size();
    Buffer b = std::move(held_[i]);
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
    if (random_() % 2 == 0) return true;  // one-way, as it goes
    absl::Status s = b.Release();
    return s.ok() || s.code() == absl::StatusCode::kNotFound ||
           Check("release", s);
  }

  // A new lease (sometimes detached, left to expire when this process
  // dies); past kMaxLeases the oldest is revoked or simply let go.
  bool Lease() {
    const bool detached = random_() % 4 == 0;
    absl::StatusOr<client::LeaseInfo> lease =
        c_.GrantLease(absl::Seconds(2), detached);
    if (!Check("grant", lease.status())) return false;
    leases_.push_back(lease->id);
    if (leases_.size() <= kMaxLeases) return true;
    const uint64_t oldest = leases_.front();
    leases_.pop_front();
    // Buffers under it are lost with it: drop ours first.
    std::erase_if(held_,
                  [&](const Buffer& b) { return b.lease_id() == oldest; });
    absl::StatusOr<uint64_t> revoked = c_.RevokeLease(oldest);
    return revoked.ok() ||
           revoked.status().code() == absl::StatusCode::kNotFound ||
           Check("revoke", revoked.status());
  }

  bool Check(const char* what, const absl::Status& s) {
    if (s.ok()) return true;
    std::fprintf(stderr, "shmbroker-soak worker %d: %s: %s\n", ::getpid(), what,
                 s.ToString().c_str());
    return false;
  }

  client::Client& c_;
  std::mt19937_64 random_;
  std::deque<Buffer> held_;
  std::deque<uint64_t> leases_;
  uint64_t names_ = 0;
};

}  // namespace

int RunSoakWorker(const std::string& socket, uint64_t seed, int rate) {
  client::ClientOptions options;
  options.socket_path = socket;
  absl::StatusOr<std::unique_ptr<client::Client>> c =
      client::Client::Connect(options);
  if (!c.ok()) {
    std::fprintf(stderr, "shmbroker-soak worker: connect: %s\n",
                 c.status().ToString().c_str());
    return 1;
  }
  Workload workload(**c, seed);
  const absl::Duration step = absl::Seconds(1) / std::max(rate, 1);
  for (absl::Time next = absl::Now();; next += step) {
    if (!workload.Step()) return 1;
    if (absl::Now() > next + 2 * step) next = absl::Now() - step;  // behind
    absl::SleepFor(next + step - absl::Now());
  }
}

}  // namespace shmbroker::bench
