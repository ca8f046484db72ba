// shmbrokerd: wires the pieces together and runs until SIGTERM/SIGINT;
// SIGHUP re-reads --tenant_limits.
//   SocketFiles (lock, listeners) -> Registry (core) -> FdChannel (sessions,
//   fds, death detection) -> BrokerService (gRPC) <- GrpcAcceptor (identity)
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/byte_size.h"
#include "core/registry.h"
#include "server/broker_service.h"
#include "server/config.h"
#include "server/fd_channel.h"
#include "server/fd_limit.h"
#include "server/grpc_acceptor.h"
#include "server/health.h"
#include "server/lease_sweeper.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/peer_credentials.h"
#include "server/restart.h"
#include "server/scavenger.h"
#include "server/service_manager.h"
#include "server/socket_files.h"
#include "server/tenant_limits.h"

namespace shmbroker {
namespace {

// SIGHUP: re-reads --tenant_limits and applies it whole, or keeps the
// limits in force when it is bad.
void ReloadTenantLimits(const ServerConfig& config, Registry* registry,
                        GrpcConnections* connections, Metrics* metrics) {
  if (config.tenant_limits_path.empty()) {
    spdlog::info("received SIGHUP: no --tenant_limits file to re-read");
    return;
  }
  absl::StatusOr<TenantLimits> limits =
      ReadTenantLimits(config.tenant_limits_path, TenantDefaultsOf(config));
  if (!limits.ok()) {
    spdlog::error(
        "received SIGHUP: tenant limits refused, the limits in force are "
        "kept: {}",
        limits.status().message());
    metrics->TenantLimitsRead(/*reload=*/true, /*applied=*/false, 0);
    return;
  }
  registry->SetOwnQuotas(limits->quotas);
  connections->SetOwnLimits(limits->connections);
  metrics->TenantLimitsRead(/*reload=*/true, /*applied=*/true,
                            limits->tenants());
  spdlog::info(
      "received SIGHUP: tenant limits: {} gives {} uids their own "
      "limits",
      config.tenant_limits_path, limits->tenants());
}

int Run(const ServerConfig& config) {
  // Signals are taken synchronously by sigwait below; block them before any
  // thread starts so that no other thread receives them.
  // SIGHUP re-reads --tenant_limits.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  RegistryOptions registry_options = config.registry;
  registry_options.max_segment_fd = SetUpFdLimit(config);

  absl::StatusOr<std::unique_ptr<SocketFiles>> files =
      SocketFiles::Create(config.socket_path, config.socket_group);
  if (!files.ok()) {
    spdlog::critical("{}", files.status().message());
    return 1;
  }
  if (!config.state_dir.empty()) {
    // POSIX names carry the state directory's lasting instance id, so that
    // a successor knows which names are its predecessors'.
    absl::StatusOr<std::string> instance =
        Restart::InstanceId(config.state_dir);
    if (!instance.ok()) {
      spdlog::critical(
          "{} (set --state_dir, or --state_dir=none to keep no "
          "books)",
          instance.status().message());
      return 1;
    }
    registry_options.shm_prefix =
        absl::StrCat("/", config.shm_prefix, ".", *instance);
  }
  MetricsOptions metrics_options;
  metrics_options.address = config.metrics_address;
  metrics_options.max_tenants = config.metrics_max_tenants;
  metrics_options.version = SHMBROKER_VERSION;
  absl::StatusOr<std::unique_ptr<Metrics>> metrics =
      Metrics::Create(metrics_options);
  if (!metrics.ok()) {
    spdlog::critical("{}", metrics.status().message());
    return 1;
  }
  // Registry events go to the health reporter, which passes them on to the
  // metrics.
  HealthReporter health(metrics->get(), config.registry.capacity_bytes);
  Registry registry(registry_options, RealClock(), &health);
  if (config.pooling) {
    if (absl::Status s = registry.EnablePooling(config.pool); !s.ok()) {
      spdlog::critical("pooling: {}", s.message());
      return 1;
    }
  }
  std::unique_ptr<Restart> restart;
  if (!config.state_dir.empty()) {
    absl::StatusOr<std::unique_ptr<Restart>> begun =
        Restart::Begin(config, &registry, metrics->get());
    if (!begun.ok()) {
      spdlog::critical("books: {} (set --state_dir, or --state_dir=none)",
                       begun.status().message());
      return 1;
    }
    restart = std::move(*begun);
  } else {
    spdlog::info(
        "--state_dir=none: no books are kept; a restart loses "
        "track of every buffer");
    TakeBackMemoryFromFdStore(nullptr, metrics->get());  // closes them
  }
  GrpcConnections grpc_connections(config.max_grpc_connections_per_uid);
  grpc_connections.SetOwnLimits(config.tenant_limits.connections);
  (*metrics)->TenantLimitsRead(/*reload=*/false, /*applied=*/true,
                               config.tenant_limits.tenants());
  if (!config.tenant_limits_path.empty()) {
    spdlog::info("tenant limits: {} gives {} uids their own limits",
                 config.tenant_limits_path, config.tenant_limits.tenants());
  }
  (*metrics)->AddStateSource(
      &registry, &grpc_connections,
      restart != nullptr ? &restart->journal() : nullptr);
  ReclaimLatencies latencies;
  FdChannel fd_channel(
      &registry, (*files)->fd_channel_listener(), metrics->get(), &latencies,
      config.keepalive_max_per_second, config.max_frames_per_second,
      [&health](bool blocked) { health.AcceptorBlocked(blocked); });
  if (absl::Status s = fd_channel.Start(); !s.ok()) {
    spdlog::critical("fd channel: {}", s.message());
    return 1;
  }
  LeaseSweeper sweeper(&registry, &fd_channel, metrics->get(), &latencies,
                       config.lease_sweep_batch);
  sweeper.Start();
  Scavenger scavenger(&registry, config.pool.scavenge_delay);
  if (config.pooling) scavenger.Start();
  PeerTable peers(config.max_calls_per_second);
  ServiceOptions service_options;
  service_options.pages.max_size = config.list_max_page_size;
  service_options.version = SHMBROKER_VERSION;
  service_options.started = absl::Now();
  BrokerService service(&registry, &fd_channel, &peers, metrics->get(),
                        &latencies, &sweeper, service_options);
  fd_channel.ServeCalls(&service);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes));
  // These apply to the connections GrpcAcceptor adds too: gRPC builds their
  // channel stacks from the server's arguments.
  if (config.idle_connection_timeout > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               static_cast<int>(absl::ToInt64Milliseconds(
                                   config.idle_connection_timeout)));
  }
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(config.grpc_keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(
                                 config.grpc_keepalive_timeout)));
  // Keep pinging a connection that has a call open but sends nothing (a
  // KeepAlive stream between renewals).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // No listening port: connections come from GrpcAcceptor, which knows
  // who is calling.
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    spdlog::critical("cannot start the gRPC server");
    return 1;
  }
  health.Attach(server->GetHealthCheckService());
  GrpcAcceptor acceptor(
      (*files)->grpc_listener(), server.get(), &peers, &grpc_connections,
      metrics->get(),
      [&health](bool blocked) { health.AcceptorBlocked(blocked); });
  acceptor.Start();
  if (restart != nullptr) restart->Start();

  spdlog::info("shmbrokerd {} serving on unix:{} (fd channel {}), capacity {}",
               SHMBROKER_VERSION, config.socket_path,
               (*files)->fd_channel_path(),
               FormatByteSize(config.registry.capacity_bytes));
  if (const PooledAllocator* pool = registry.pool()) {
    spdlog::info("pooling buffers of up to {} in arenas of {}",
                 FormatByteSize(pool->options().pooled_max_size),
                 FormatByteSize(pool->options().arena_size));
  } else {
    spdlog::info("pooling is off: {}", config.pooling_off_reason);
  }
  if (const int port = (*metrics)->port(); port != 0) {
    const std::string host =
        config.metrics_address.substr(0, config.metrics_address.rfind(':'));
    spdlog::info("metrics on http://{}:{}/metrics", host, port);
    std::printf("shmbrokerd: metrics on http://%s:%d/metrics\n", host.c_str(),
                port);
  }
  std::printf("shmbrokerd: listening on %s\n", config.socket_path.c_str());
  std::fflush(stdout);
  NotifyReady();

  int signal_number = 0;
  for (;;) {
    sigwait(&signals, &signal_number);
    if (signal_number != SIGHUP) break;
    ReloadTenantLimits(config, &registry, &grpc_connections, metrics->get());
  }
  spdlog::info("received {}; stopping", strsignal(signal_number));
  NotifyStopping();
  health.Stopping();
  const RegistryStats held = registry.Stats();
  // SIGTERM (systemctl stop/restart, Kubernetes) is a restart: the books
  // and POSIX names stay for the next daemon, which gives back what its
  // clients present. SIGINT stops for good: every hold ends, in the books
  // too (docs/operations.md, "Restarting and upgrading").
  const bool for_restart = restart != nullptr && signal_number == SIGTERM;
  spdlog::info(
      "stopping with {} buffers ({} bytes) held by {} client connections: "
      "each is told and closed{}",
      held.buffers, held.allocated_bytes, held.clients,
      for_restart ? "; the books keep them for the next daemon to resume"
                  : ", and its holds end");
  acceptor.Stop();
  fd_channel.ServeCalls(nullptr);  // calls on it are answered UNAVAILABLE
  // Cancel what is in flight at once: KeepAlive streams never end by
  // themselves, so any grace period would always be waited out in full.
  server->Shutdown(std::chrono::system_clock::now());
  sweeper.Stop();
  scavenger.Stop();
  // Nothing grants memory now: the books close on what the clients hold.
  if (for_restart) restart->Stop();
  // Nothing allocates or expires now. Under systemd, memfd memory goes to
  // the fd store before the connections close: a buffer only this daemon
  // holds would otherwise die with it.
  if (for_restart) KeepMemoryInFdStore(registry);
  fd_channel.Stop();          // tells and closes every client connection
  (*metrics)->StopServing();  // no scrape may outlive the registry
  const RegistryStats left = registry.Stats();
  files->reset();  // removes the sockets
  spdlog::info("stopped; {} buffers, {} bytes still allocated", left.buffers,
               left.allocated_bytes);
  return 0;
}

}  // namespace
}  // namespace shmbroker

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "host-local shared-memory broker.\n"
      "Usage: shmbrokerd [--socket=PATH] [--capacity=SIZE] [flags]");
  // --help lists the daemon's flags (Abseil matches by file name).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "server/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "shmbrokerd: unexpected argument \"%s\"\n", rest[1]);
    return 2;
  }
  // Debian's Abseil keeps Mutex deadlock detection on in release builds; it
  // costs measurable time on every lock of the hot path. Lock order is kept
  // simple by design (see docs/architecture.md) and checked in debug builds.
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  absl::StatusOr<shmbroker::ServerConfig> config = shmbroker::ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "shmbrokerd: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  if (absl::Status s =
          shmbroker::SetUpLogging(config->log_level, config->log_format);
      !s.ok()) {
    std::fprintf(stderr, "shmbrokerd: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  return shmbroker::Run(*config);
}
