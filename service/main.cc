// cotaskd: the cotask server.
//
// Signals: SIGTERM and SIGINT drain (health goes NOT_SERVING, new tasks get UNAVAILABLE,
// running tasks get --drain_timeout to end, the rest are cancelled) and exit 0; SIGHUP reloads what
// can be reloaded (nothing yet: it says so). They are blocked before any thread starts and taken by
// sigwait here, so no gRPC thread ever runs a handler.
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "scheduler/engine/validation.h"
#include "service/env_flags.h"
#include "service/server.h"
#include "service/usable_cpus.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051",
          "host:port for gRPC (port 0 picks a free one). Env: COTASK_ADDRESS");
ABSL_FLAG(std::string, log_format, "text", "the log's lines: text, or json (one object a line)");
ABSL_FLAG(std::string, task_failure_log_level, "warning",
          "log tasks that fail or time out at this level: info, warning, error, or none");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9464",
          "host:port for Prometheus metrics on /metrics (port 0 picks one; empty: none)");
ABSL_FLAG(int32_t, io_threads, -1,
          "threads serving gRPC calls (one completion queue each); 0: the engine's thread serves "
          "them (no thread hops: lower latency, and on 2 CPUs more calls/s); -1: 0 if cotaskd "
          "may use at most 2 CPUs (its affinity mask and cgroup CPU quota), else 1");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "on SIGTERM/SIGINT, how long running tasks get to end before they are cancelled");
ABSL_FLAG(int64_t, max_request_bytes, 4 << 20, "the largest request message accepted");
ABSL_FLAG(int64_t, max_pending_tasks, 100'000,
          "tasks not yet ended; past it creates get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_active_groups, 10'000,
          "groups not yet ended; past it CreateGroup gets RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, retain_finished_tasks, 100'000,
          "ended tasks kept for Get/List/Watch; the oldest are forgotten past it");
ABSL_FLAG(int64_t, retain_finished_groups, 10'000,
          "ended groups kept for Get/List/Watch; the oldest are forgotten past it");
ABSL_FLAG(int64_t, max_batch_size, 1000, "tasks in one CreateTasks call");
ABSL_FLAG(int64_t, max_payload_bytes, 1 << 20,
          "a sleep task's result, an exec task's stdin, a cancel message");
ABSL_FLAG(int64_t, max_labels, 64, "labels on one task or group");
ABSL_FLAG(int64_t, max_label_key_bytes, 63, "bytes in a label key");
ABSL_FLAG(int64_t, max_label_value_bytes, 255, "bytes in a label value");
ABSL_FLAG(int64_t, max_log_bytes, 1 << 20,
          "event log kept per task and per group; older events are dropped and reported to "
          "watchers as truncated");
ABSL_FLAG(int64_t, max_watchers, 10'000, "open Watch streams");
ABSL_FLAG(std::vector<std::string>, exec_allow, {},
          "comma-separated absolute paths of the programs exec tasks may run; empty: exec "
          "tasks are refused");
ABSL_FLAG(std::string, exec_user, "nobody",
          "when cotaskd runs as root, exec tasks run as this user (and its primary group)");
ABSL_FLAG(std::string, exec_path, "/usr/local/bin:/usr/bin:/bin",
          "PATH in exec tasks' environment (the only variable they get besides their own)");
ABSL_FLAG(bool, adopt_orphans, true,
          "become a child subreaper: processes that exec tasks leave behind are reparented to "
          "cotaskd, killed once no running task's process group holds them, and reaped (no "
          "zombies as a container's PID 1)");
ABSL_FLAG(absl::Duration, exec_kill_grace, absl::Seconds(5),
          "after a cancelled exec task's SIGTERM, how long before SIGKILL (tasks may set "
          "their own)");
ABSL_FLAG(int64_t, exec_output_tail_bytes, 4096,
          "the tail of an exec task's output kept in its result");

ABSL_FLAG(std::string, semaphores, "",
          "named semaphores to declare, as name=limit[,name=limit...] (more may be made with "
          "CreateSemaphore)");
ABSL_FLAG(int64_t, max_semaphores, 10'000, "named semaphores in all");
ABSL_FLAG(int64_t, max_events, 10'000, "named events in all");
ABSL_FLAG(int64_t, max_runners, 10'000, "runners (OpenRunner streams) open at once");
ABSL_FLAG(std::string, queues, "",
          "named queues of dispatch tasks to declare, as name[:fifo|lifo|priority][:maxsize]"
          "[,...]; others are made on first use as fifo with --queue_maxsize");
ABSL_FLAG(int64_t, queue_maxsize, 100'000,
          "maxsize of queues made on first use (tasks not started; past it creates get "
          "RESOURCE_EXHAUSTED)");
ABSL_FLAG(int64_t, max_queues, 1000, "named queues in all");
ABSL_FLAG(int64_t, max_workers, 1000, "workers (Workers.Work streams) connected at once");
ABSL_FLAG(absl::Duration, worker_heartbeat_timeout, absl::Seconds(30),
          "a worker that sends nothing for this long is gone and its tasks go back to their "
          "queues (a worker may ask for another, 1s to 1h)");
ABSL_FLAG(absl::Duration, worker_cancel_grace, absl::Seconds(10),
          "how long a worker has to end a cancelled task before it ends CANCELLED anyway");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(30),
          "ping a connection idle this long (a lost client's runner then ends)");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "drop a connection whose ping is not answered within this");

ABSL_FLAG(absl::Duration, max_connection_age, absl::InfiniteDuration(),
          "close connections this old (clients reconnect; Watch resumes): spreads clients over "
          "replicas behind a load balancer");
ABSL_FLAG(absl::Duration, max_connection_age_grace, absl::Seconds(10),
          "how long calls of a connection closed for its age may go on");

namespace {

using cotask::service::Log;
using cotask::service::LogLevel;

// A count or size flag: at least `min`.
absl::StatusOr<size_t> Bound(const absl::Flag<int64_t>& flag, const char* name, int64_t min) {
  const int64_t value = absl::GetFlag(flag);
  if (value < min) return absl::InvalidArgumentError(absl::StrCat("--", name, " must be >= ", min));
  return static_cast<size_t>(value);
}

absl::StatusOr<cotask::service::ServerOptions> OptionsFromFlags() {
  cotask::service::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.io_threads = absl::GetFlag(FLAGS_io_threads);
  if (options.io_threads == -1) options.io_threads = cotask::service::UsableCpus() <= 2 ? 0 : 1;
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  const std::string failure_level = absl::GetFlag(FLAGS_task_failure_log_level);
  if (failure_level == "info") {
    options.task_failure_log_level = LogLevel::kInfo;
  } else if (failure_level == "warning") {
    options.task_failure_log_level = LogLevel::kWarning;
  } else if (failure_level == "error") {
    options.task_failure_log_level = LogLevel::kError;
  } else if (failure_level == "none") {
    options.task_failure_log_level.reset();
  } else {
    return absl::InvalidArgumentError(
        "--task_failure_log_level must be info, warning, error or none");
  }
  if (options.io_threads < 0 || options.io_threads > 64) {
    return absl::InvalidArgumentError("--io_threads must be from 0 to 64, or -1 (automatic)");
  }
  if (absl::GetFlag(FLAGS_drain_timeout) < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--drain_timeout must be >= 0s");
  }
  cotask::engine::EngineOptions& engine = options.engine;
  struct SizeFlag {
    const absl::Flag<int64_t>* flag;
    const char* name;
    int64_t min;
    size_t* out;
  };
  size_t max_request_bytes = 0;
  const SizeFlag sizes[] = {
      {&FLAGS_max_request_bytes, "max_request_bytes", 1024, &max_request_bytes},
      {&FLAGS_max_pending_tasks, "max_pending_tasks", 1, &engine.max_pending_tasks},
      {&FLAGS_max_active_groups, "max_active_groups", 1, &engine.max_active_groups},
      {&FLAGS_retain_finished_tasks, "retain_finished_tasks", 0, &engine.retain_finished_tasks},
      {&FLAGS_retain_finished_groups, "retain_finished_groups", 0, &engine.retain_finished_groups},
      {&FLAGS_max_batch_size, "max_batch_size", 1, &engine.max_batch_size},
      {&FLAGS_max_payload_bytes, "max_payload_bytes", 0, &engine.max_payload_bytes},
      {&FLAGS_max_labels, "max_labels", 0, &engine.max_labels},
      {&FLAGS_max_label_key_bytes, "max_label_key_bytes", 1, &engine.max_label_key_bytes},
      {&FLAGS_max_label_value_bytes, "max_label_value_bytes", 0, &engine.max_label_value_bytes},
      {&FLAGS_max_log_bytes, "max_log_bytes", 1, &engine.max_log_bytes},
      {&FLAGS_max_watchers, "max_watchers", 0, &options.scheduler.max_watchers},
      {&FLAGS_exec_output_tail_bytes, "exec_output_tail_bytes", 0, &engine.exec_output_tail_bytes},
      {&FLAGS_max_semaphores, "max_semaphores", 0, &engine.max_semaphores},
      {&FLAGS_max_events, "max_events", 0, &engine.max_events},
      {&FLAGS_max_runners, "max_runners", 0, &engine.max_runners},
      {&FLAGS_max_queues, "max_queues", 1, &engine.max_queues},
      {&FLAGS_max_workers, "max_workers", 0, &engine.max_workers},
  };
  for (const SizeFlag& size : sizes) {
    absl::StatusOr<size_t> value = Bound(*size.flag, size.name, size.min);
    if (!value.ok()) return value.status();
    *size.out = *value;
  }
  if (max_request_bytes > (1u << 30)) {
    return absl::InvalidArgumentError("--max_request_bytes must be <= 1073741824");
  }
  options.max_request_bytes = static_cast<int>(max_request_bytes);

  for (const std::string& program : absl::GetFlag(FLAGS_exec_allow)) {
    if (program.empty() || program[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("--exec_allow: \"", program, "\" is not an absolute path"));
    }
    engine.exec_allow.push_back(program);
  }
  engine.exec_path = absl::GetFlag(FLAGS_exec_path);
  absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> semaphores =
      cotask::engine::ParseSemaphores(absl::GetFlag(FLAGS_semaphores));
  if (!semaphores.ok()) return semaphores.status();
  if (semaphores->size() > engine.max_semaphores) {
    return absl::InvalidArgumentError("--semaphores declares more than --max_semaphores");
  }
  engine.semaphores = *std::move(semaphores);
  absl::StatusOr<std::vector<cotask::engine::QueueSpec>> queues =
      cotask::engine::ParseQueues(absl::GetFlag(FLAGS_queues));
  if (!queues.ok()) return queues.status();
  if (queues->size() > engine.max_queues) {
    return absl::InvalidArgumentError("--queues declares more than --max_queues");
  }
  engine.queues = *std::move(queues);
  engine.queue_maxsize = absl::GetFlag(FLAGS_queue_maxsize);
  if (engine.queue_maxsize < 1 || engine.queue_maxsize > 10'000'000) {
    return absl::InvalidArgumentError("--queue_maxsize must be from 1 to 10000000");
  }
  engine.worker_heartbeat_timeout = absl::GetFlag(FLAGS_worker_heartbeat_timeout);
  if (engine.worker_heartbeat_timeout < absl::Seconds(1) ||
      engine.worker_heartbeat_timeout > absl::Hours(1)) {
    return absl::InvalidArgumentError("--worker_heartbeat_timeout must be from 1s to 1h");
  }
  engine.worker_cancel_grace = absl::GetFlag(FLAGS_worker_cancel_grace);
  if (engine.worker_cancel_grace < absl::ZeroDuration() ||
      engine.worker_cancel_grace > absl::Hours(1)) {
    return absl::InvalidArgumentError("--worker_cancel_grace must be from 0s to 1h");
  }
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.max_connection_age = absl::GetFlag(FLAGS_max_connection_age);
  options.max_connection_age_grace = absl::GetFlag(FLAGS_max_connection_age_grace);
  if (options.max_connection_age != absl::InfiniteDuration() &&
      (options.max_connection_age < absl::Milliseconds(100) ||
       options.max_connection_age > absl::Hours(24 * 20))) {
    return absl::InvalidArgumentError("--max_connection_age must be from 100ms to 480h, or inf");
  }
  if (options.max_connection_age_grace < absl::ZeroDuration() ||
      options.max_connection_age_grace > absl::Hours(24)) {
    return absl::InvalidArgumentError("--max_connection_age_grace must be from 0s to 24h");
  }
  for (const auto& [name, value] : {std::pair{"keepalive_time", options.keepalive_time},
                                    std::pair{"keepalive_timeout", options.keepalive_timeout}}) {
    if (value < absl::Seconds(1) || value > absl::Hours(24)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " must be from 1s to 24h"));
    }
  }
  options.adopt_orphans = absl::GetFlag(FLAGS_adopt_orphans);
  const absl::Duration grace = absl::GetFlag(FLAGS_exec_kill_grace);
  if (grace < absl::ZeroDuration() || grace > absl::Hours(1)) {
    return absl::InvalidArgumentError("--exec_kill_grace must be from 0s to 1h");
  }
  engine.exec_kill_grace = absl::ToChronoMilliseconds(grace);
  if (geteuid() == 0) {
    const std::string user = absl::GetFlag(FLAGS_exec_user);
    struct passwd entry;
    struct passwd* found = nullptr;
    std::vector<char> buffer(16384);
    if (getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
        found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--exec_user: no user named \"", user, "\" on this host"));
    }
    engine.exec_run_as = cotask::process::Credentials{found->pw_uid, found->pw_gid};
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built to check every absl::Mutex lock (gRPC's locks) for deadlock
  // cycles: a cost on every call (GraphCycles::GetId, 3% of a Run's server time in perf).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::SetProgramUsageMessage(
      "cotaskd: the cotask task scheduler server.\n"
      "Usage: cotaskd [--address=127.0.0.1:50051] [--exec_allow=/bin/echo,...] [flags]\n"
      "Every flag may also be set from the environment as COTASK_<FLAG NAME IN CAPITALS>.");
  if (absl::Status status = cotask::service::ApplyFlagsFromEnvironment(); !status.ok()) {
    Log(LogLevel::kError, status.message());
    return 2;
  }
  absl::ParseCommandLine(argc, argv);
  const std::string log_format = absl::GetFlag(FLAGS_log_format);
  if (log_format != "text" && log_format != "json") {
    Log(LogLevel::kError, "--log_format must be text or json");
    return 2;
  }
  cotask::service::SetLogFormat(log_format == "json" ? cotask::service::LogFormat::kJson
                                                     : cotask::service::LogFormat::kText);
  absl::StatusOr<cotask::service::ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    Log(LogLevel::kError, options.status().message());
    return 2;
  }
  const size_t allowed = options->engine.exec_allow.size();
  const int io_threads = options->io_threads;
  auto server = cotask::service::Server::Start(*std::move(options));
  if (!server.ok()) {
    Log(LogLevel::kError, server.status().message());
    return 1;
  }
  const std::string& metrics = (*server)->metrics_address();
  Log(LogLevel::kInfo,
      absl::StrCat("listening on ", (*server)->address(), "; ",
                   metrics.empty() ? std::string("no metrics")
                                   : absl::StrCat("metrics on http://", metrics, "/metrics"),
                   "; exec: ",
                   allowed == 0 ? std::string("disabled (--exec_allow is empty)")
                                : absl::StrCat(allowed, " programs allowed")),
      {{"address", (*server)->address()},
       {"metrics_address", metrics},
       {"exec_allowed", absl::StrCat(allowed)},
       {"io_threads", absl::StrCat(io_threads)},
       {"max_pending_tasks", absl::StrCat(absl::GetFlag(FLAGS_max_pending_tasks))}});

  while (true) {
    int signal_number = 0;
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      Log(LogLevel::kInfo, "SIGHUP: nothing to reload");
      continue;
    }
    const absl::Duration drain = absl::GetFlag(FLAGS_drain_timeout);
    Log(LogLevel::kInfo,
        absl::StrCat(signal_number == SIGTERM ? "SIGTERM" : "SIGINT", ": draining, up to ",
                     absl::FormatDuration(drain)),
        {{"drain_timeout", absl::FormatDuration(drain)}});
    (*server)->Shutdown(drain);
    Log(LogLevel::kInfo, "stopped");
    return 0;
  }
}
