#include "service/metrics.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/util/time_util.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "scheduler/runtime/check.h"

namespace cotask::service {
namespace {

using google::protobuf::util::TimeUtil;
using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

constexpr char kVersion[] = "0.1.0";

// The task kinds, as metric labels.
constexpr std::array<const char*, 3> kKinds = {"sleep", "exec", "dispatch"};
constexpr int kDispatch = 2;
constexpr std::array<v1::Task::State, 4> kEnds = {v1::Task::SUCCEEDED, v1::Task::FAILED,
                                                  v1::Task::CANCELLED, v1::Task::TIMED_OUT};
constexpr std::array<v1::Group::State, 4> kGroupEnds = {v1::Group::SUCCEEDED, v1::Group::FAILED,
                                                        v1::Group::CANCELLED, v1::Group::TIMED_OUT};

int KindIndex(const v1::Task& task) {
  return task.spec().has_exec() ? 1 : task.spec().has_dispatch() ? kDispatch : 0;
}

// From and to: Unix nanoseconds (engine::TaskTimes).
double Seconds(int64_t from, int64_t to) { return static_cast<double>(to - from) / 1e9; }

prometheus::Family<prometheus::Counter>& Counters(prometheus::Registry& r, const char* name,
                                                  const char* help) {
  return BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& Gauges(prometheus::Registry& r, const char* name,
                                              const char* help) {
  return BuildGauge().Name(name).Help(help).Register(r);
}

// ----- process_*: from /proc at each scrape (prometheus-cpp has no process collector).
class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    const size_t close = stat.rfind(')');
    std::vector<absl::string_view> fields =
        absl::StrSplit(absl::string_view(stat).substr(close + 2), ' ');
    auto field = [&](size_t number) {  // number as in proc(5), 1-based
      double value = 0;
      if (number >= 3 && number - 3 < fields.size()) {
        (void)absl::SimpleAtod(fields[number - 3], &value);
      }
      return value;
    };
    Add(out, "process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
        prometheus::MetricType::Counter, (field(14) + field(15)) / ticks);
    Add(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
        prometheus::MetricType::Gauge, field(23));
    Add(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
        prometheus::MetricType::Gauge, field(24) * page);
    Add(out, "process_start_time_seconds",
        "Start time of the process since the unix epoch, in seconds.",
        prometheus::MetricType::Gauge, BootTime() + field(22) / ticks);
    std::error_code error;
    double fds = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", error);
         !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
      ++fds;
    }
    Add(out, "process_open_fds", "Number of open file descriptors.", prometheus::MetricType::Gauge,
        fds);
    Add(out, "process_max_fds", "Maximum number of open file descriptors.",
        prometheus::MetricType::Gauge, MaxFds());
    return out;
  }

 private:
  static void Add(std::vector<prometheus::MetricFamily>& out, const char* name, const char* help,
                  prometheus::MetricType type, double value) {
    prometheus::MetricFamily family{name, help, type, {}};
    prometheus::ClientMetric metric;
    if (type == prometheus::MetricType::Counter) {
      metric.counter.value = value;
    } else {
      metric.gauge.value = value;
    }
    family.metric.push_back(std::move(metric));
    out.push_back(std::move(family));
  }
  static double BootTime() {
    std::ifstream in("/proc/stat");
    std::string line;
    while (std::getline(in, line)) {
      double seconds = 0;
      if (absl::StartsWith(line, "btime ") && absl::SimpleAtod(line.substr(6), &seconds)) {
        return seconds;
      }
    }
    return 0;
  }
  static double MaxFds() {
    std::ifstream in("/proc/self/limits");
    std::string line;
    while (std::getline(in, line)) {
      if (!absl::StartsWith(line, "Max open files")) continue;
      std::vector<absl::string_view> words =
          absl::StrSplit(line.substr(14), ' ', absl::SkipEmpty());
      double soft = 0;
      if (!words.empty() && absl::SimpleAtod(words[0], &soft)) return soft;
    }
    return 0;
  }
};

// ----- cotask_* task figures: written by the engine's thread alone (the observer), read by
// scrapes and StreamStats on others. One writer, so a change is a relaxed load and store, not a
// locked read-modify-write (prometheus-cpp's Counter and Gauge; its Histogram takes a mutex):
// the engine changes them several times a task, at hundreds of thousands of tasks a second.

// A count or level that only one thread changes.
class EngineFigure {
 public:
  void Add(int64_t n) { Set(Get() + n); }
  void Set(int64_t n) { value_.store(n, std::memory_order_relaxed); }
  int64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Latency buckets from 100us to 1h: tasks range from no-ops to long jobs.
// The names of `values`, one for each (an end state added to kEnds gets its name here too).
template <class Enum, size_t N, class NameOf>
std::array<std::string, N> NamesOf(const std::array<Enum, N>& values, NameOf name_of) {
  std::array<std::string, N> names;
  for (size_t i = 0; i < N; ++i) names[i] = name_of(values[i]);
  return names;
}

constexpr std::array<double, 16> kTaskBuckets = {
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};

// A histogram that only one thread observes into. A scrape's count is the sum of the buckets it
// read, so the +Inf bucket and _count always agree; _sum may be one observation apart.
class EngineHistogram {
 public:
  void Observe(double seconds) {
    const auto bucket = static_cast<size_t>(
        std::lower_bound(kTaskBuckets.begin(), kTaskBuckets.end(), seconds) - kTaskBuckets.begin());
    counts_[bucket].Add(1);
    sum_.store(sum_.load(std::memory_order_relaxed) + seconds, std::memory_order_relaxed);
  }
  prometheus::ClientMetric::Histogram Collect() const {
    prometheus::ClientMetric::Histogram out;
    int64_t cumulative = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      cumulative += counts_[i].Get();
      out.bucket.push_back(
          {static_cast<uint64_t>(cumulative),
           i < kTaskBuckets.size() ? kTaskBuckets[i] : std::numeric_limits<double>::infinity()});
    }
    out.sample_count = static_cast<uint64_t>(cumulative);
    out.sample_sum = sum_.load(std::memory_order_relaxed);
    return out;
  }

 private:
  std::array<EngineFigure, kTaskBuckets.size() + 1> counts_;  // not cumulative; the last: +Inf
  std::atomic<double> sum_{0};
};

// The task, group, event log and spawn figures, and their families at a scrape.
class EngineCollector final : public prometheus::Collectable {
 public:
  struct Kind {
    EngineFigure created;
    std::array<EngineFigure, kEnds.size()> finished;
    EngineFigure pending;  // every queue's (StreamStats' figure)
    EngineFigure running;
    EngineFigure retries;
    EngineFigure cancellations;
    EngineHistogram wait_seconds;
    EngineHistogram run_seconds;
  };
  // Dispatch tasks by queue (names bounded by --max_queues).
  struct QueueTasks {
    EngineFigure pending;
    EngineFigure running;
  };

  // The end states' names, as labels and StreamStats' keys. (Made here, when the metrics are,
  // before the server's threads start: the first name read builds protobuf's descriptors of
  // scheduler.proto, which gRPC's reflection service reads on its own thread.)
  const std::array<std::string, kEnds.size()> end_names =
      NamesOf(kEnds, [](v1::Task::State s) { return v1::Task::State_Name(s); });
  const std::array<std::string, kGroupEnds.size()> group_end_names =
      NamesOf(kGroupEnds, [](v1::Group::State s) { return v1::Group::State_Name(s); });

  std::array<Kind, kKinds.size()> kinds;
  EngineFigure groups_active;
  std::array<EngineFigure, kGroupEnds.size()> groups_finished;
  EngineFigure log_bytes;
  EngineFigure log_dropped;
  EngineFigure spawns;
  EngineFigure spawn_failures;

  // The engine's thread: a queue's figures, made on first use.
  QueueTasks& Queue(const std::string& name) {
    // Only this thread inserts, so it may look without the lock; scrapes take it to walk.
    if (auto it = queues_.find(name); it != queues_.end()) return it->second;
    std::lock_guard lock(queues_mu_);
    return queues_[name];
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    using Label = prometheus::ClientMetric::Label;
    auto family = [](const char* name, const char* help, MetricType type) {
      return prometheus::MetricFamily{name, help, type, {}};
    };
    auto add = [](prometheus::MetricFamily& f, std::vector<Label> labels, int64_t value) {
      prometheus::ClientMetric& metric = f.metric.emplace_back();
      metric.label = std::move(labels);
      (f.type == MetricType::Counter ? metric.counter.value : metric.gauge.value) =
          static_cast<double>(value);
    };
    auto add_histogram = [](prometheus::MetricFamily& f, Label label,
                            const EngineHistogram& histogram) {
      prometheus::ClientMetric& metric = f.metric.emplace_back();
      metric.label = {std::move(label)};
      metric.histogram = histogram.Collect();
    };
    auto created =
        family("cotask_tasks_created_total", "Tasks created, by kind.", MetricType::Counter);
    auto finished = family("cotask_tasks_finished_total",
                           "Tasks that ended, by kind and final state.", MetricType::Counter);
    auto pending =
        family("cotask_tasks_pending",
               "Tasks not running yet (PENDING or QUEUED), by kind and queue.", MetricType::Gauge);
    auto running =
        family("cotask_tasks_running", "Tasks RUNNING, by kind and queue.", MetricType::Gauge);
    auto wait = family("cotask_task_wait_seconds",
                       "Time from a task's creation to its first start, in seconds.",
                       MetricType::Histogram);
    auto run = family("cotask_task_run_seconds", "Time a task's last attempt ran, in seconds.",
                      MetricType::Histogram);
    auto retries = family("cotask_task_retries_total",
                          "Attempts that failed and were retried, by kind.", MetricType::Counter);
    auto cancellations = family("cotask_task_cancellations_total",
                                "Tasks that ended CANCELLED, by kind.", MetricType::Counter);
    for (size_t k = 0; k < kKinds.size(); ++k) {
      const Kind& kind = kinds[k];
      const Label label{"kind", kKinds[k]};
      add(created, {label}, kind.created.Get());
      for (size_t e = 0; e < kEnds.size(); ++e) {
        add(finished, {label, {"state", end_names[e]}}, kind.finished[e].Get());
      }
      if (static_cast<int>(k) != kDispatch) {
        add(pending, {label, {"queue", ""}}, kind.pending.Get());
        add(running, {label, {"queue", ""}}, kind.running.Get());
      }
      add_histogram(wait, label, kind.wait_seconds);
      add_histogram(run, label, kind.run_seconds);
      add(retries, {label}, kind.retries.Get());
      add(cancellations, {label}, kind.cancellations.Get());
    }
    {
      std::lock_guard lock(queues_mu_);
      for (const auto& [name, queue] : queues_) {
        const Label label{"kind", kKinds[kDispatch]};
        add(pending, {label, {"queue", name}}, queue.pending.Get());
        add(running, {label, {"queue", name}}, queue.running.Get());
      }
    }
    auto groups = family("cotask_groups_finished_total", "Groups that ended, by final state.",
                         MetricType::Counter);
    for (size_t e = 0; e < kGroupEnds.size(); ++e) {
      add(groups, {{"state", group_end_names[e]}}, groups_finished[e].Get());
    }
    // A family of one figure without labels.
    auto single = [&](const char* name, const char* help, MetricType type, int64_t value) {
      prometheus::MetricFamily f = family(name, help, type);
      add(f, {}, value);
      return f;
    };
    std::vector<prometheus::MetricFamily> out;
    for (prometheus::MetricFamily* f :
         {&created, &finished, &pending, &running, &wait, &run, &retries, &cancellations}) {
      out.push_back(std::move(*f));
    }
    out.push_back(single("cotask_groups_active", "Groups that have not ended.", MetricType::Gauge,
                         groups_active.Get()));
    out.push_back(std::move(groups));
    out.push_back(single("cotask_event_log_bytes",
                         "Bytes held by the event logs of the tasks and groups kept.",
                         MetricType::Gauge, log_bytes.Get()));
    out.push_back(single("cotask_event_log_truncated_events_total",
                         "Events dropped from full event logs (--max_log_bytes).",
                         MetricType::Counter, log_dropped.Get()));
    out.push_back(single("cotask_exec_spawns_total", "Processes exec tasks started.",
                         MetricType::Counter, spawns.Get()));
    out.push_back(single("cotask_exec_spawn_failures_total",
                         "Exec tasks whose process could not be started.", MetricType::Counter,
                         spawn_failures.Get()));
    return out;
  }

 private:
  mutable std::mutex queues_mu_;
  std::map<std::string, QueueTasks, std::less<>> queues_;  // inserted under queues_mu_
};

// grpc_server_handled_total's grpc_code, as go-grpc-prometheus names the codes.
const char* CodeName(grpc::StatusCode code) {
  static constexpr std::array<const char*, 17> kNames = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  const int index = static_cast<int>(code);
  return index >= 0 && index < static_cast<int>(kNames.size()) ? kNames[index] : "Unknown";
}

}  // namespace

// A method's figures: made once per method, read by each of its calls without a lock.
struct GrpcMethodMetrics {
  Metrics::State* state;
  prometheus::Labels labels;  // grpc_service, grpc_method, grpc_type
  prometheus::Counter* started;
  prometheus::Counter* received;
  prometheus::Counter* sent;
  prometheus::Histogram* seconds;
  std::array<std::atomic<prometheus::Counter*>, 17> handled{};  // by code, made on first use
};

// ----- The engine's metrics.
struct Metrics::State {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string address;
  std::shared_ptr<ProcessCollector> process = std::make_shared<ProcessCollector>();
  std::shared_ptr<EngineCollector> engine = std::make_shared<EngineCollector>();

  // Queues (their names are bounded by --max_queues), made on first use.
  prometheus::Family<prometheus::Gauge>* queue_depth = nullptr;
  prometheus::Family<prometheus::Gauge>* queue_size = nullptr;
  prometheus::Family<prometheus::Gauge>* queue_leased = nullptr;
  prometheus::Family<prometheus::Gauge>* queue_workers = nullptr;
  prometheus::Family<prometheus::Gauge>* queue_paused = nullptr;
  prometheus::Family<prometheus::Counter>* queue_full = nullptr;
  prometheus::Family<prometheus::Counter>* leases_lost = nullptr;
  prometheus::Gauge* workers_connected = nullptr;
  struct QueueMetrics {
    prometheus::Gauge* depth;
    prometheus::Gauge* size;
    prometheus::Gauge* leased;
    prometheus::Gauge* workers;
    prometheus::Gauge* paused;
    prometheus::Counter* full;
    prometheus::Counter* lost;
  };
  mutable std::mutex queues_mu;
  std::map<std::string, QueueMetrics, std::less<>> queues;  // guarded by queues_mu

  QueueMetrics& Queue(const std::string& name) {
    std::lock_guard lock(queues_mu);
    auto it = queues.find(name);
    if (it != queues.end()) return it->second;
    const prometheus::Labels queue = {{"queue", name}};
    return queues
        .emplace(name, QueueMetrics{&queue_depth->Add(queue), &queue_size->Add(queue),
                                    &queue_leased->Add(queue), &queue_workers->Add(queue),
                                    &queue_paused->Add(queue), &queue_full->Add(queue),
                                    &leases_lost->Add(queue)})
        .first->second;
  }

  // gRPC: per (service, method, type), made when its serve loop starts; per code, on first use.
  GrpcMethodMetrics& Method(std::string_view service, std::string_view method, const char* type);
  prometheus::Counter& Handled(GrpcMethodMetrics& method, absl::StatusCode code);
  std::mutex methods_mu;
  absl::flat_hash_map<std::string, std::unique_ptr<GrpcMethodMetrics>> methods;

  prometheus::Family<prometheus::Counter>* grpc_started = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_handled = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_received = nullptr;
  prometheus::Family<prometheus::Counter>* grpc_sent = nullptr;
  prometheus::Family<prometheus::Histogram>* grpc_seconds = nullptr;

  State() {
    prometheus::Registry& r = *registry;
    queue_depth = &Gauges(r, "cotask_queue_depth",
                          "Dispatch tasks QUEUED (ready, waiting for a worker), by queue.");
    queue_size = &Gauges(r, "cotask_queue_size",
                         "Dispatch tasks not started (PENDING or QUEUED: what maxsize bounds), by "
                         "queue.");
    queue_leased =
        &Gauges(r, "cotask_queue_leased_tasks", "Dispatch tasks held by workers, by queue.");
    queue_workers = &Gauges(r, "cotask_queue_workers", "Workers serving the queue.");
    queue_paused = &Gauges(r, "cotask_queue_paused", "1 if the queue is paused, else 0.");
    queue_full = &Counters(r, "cotask_queue_full_total",
                           "Creates refused because the queue was full (RESOURCE_EXHAUSTED), by "
                           "queue.");
    leases_lost = &Counters(r, "cotask_worker_leases_lost_total",
                            "Dispatch task attempts lost with their worker (stream ended or "
                            "heartbeats stopped), by queue.");
    workers_connected =
        &Gauges(r, "cotask_workers_connected", "Workers connected (Workers.Work streams).").Add({});
    Gauges(r, "cotask_build_info",
           "cotaskd's version and the versions of what it was built with; always 1.")
        .Add({{"version", kVersion},
              {"grpc_version", grpc::Version()},
              {"protobuf_version",
               google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)}})
        .Set(1);

    grpc_started =
        &Counters(r, "grpc_server_started_total", "Total number of RPCs started on the server.");
    grpc_handled = &BuildCounter()
                        .Name("grpc_server_handled_total")
                        .Help(
                            "Total number of RPCs completed on the server, regardless of "
                            "success or failure.")
                        .Register(r);
    grpc_received = &Counters(r, "grpc_server_msg_received_total",
                              "Total number of RPC stream messages received on the server.");
    grpc_sent = &Counters(r, "grpc_server_msg_sent_total",
                          "Total number of gRPC stream messages sent by the server.");
    grpc_seconds = &BuildHistogram()
                        .Name("grpc_server_handling_seconds")
                        .Help(
                            "Histogram of response latency (seconds) of gRPC that had been "
                            "application-level handled by the server.")
                        .Register(r);
  }
};

// ----- grpc_server_*: counted by the services' serve helpers (service/internal/serve.h).

namespace {

const char* GrpcType(const google::protobuf::MethodDescriptor& method) {
  if (method.client_streaming()) return method.server_streaming() ? "bidi_stream" : "client_stream";
  return method.server_streaming() ? "server_stream" : "unary";
}

}  // namespace

Metrics::Metrics(std::unique_ptr<State> state) : state_(std::move(state)) {}
Metrics::~Metrics() = default;

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& address) {
  auto state = std::make_unique<State>();
  try {
    state->exposer = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on --metrics_address=", address, ": ", e.what()));
  }
  state->exposer->RegisterCollectable(state->engine);
  state->exposer->RegisterCollectable(state->registry);
  state->exposer->RegisterCollectable(state->process);
  const std::vector<int> ports = state->exposer->GetListeningPorts();
  state->address =
      absl::StrCat(address.substr(0, address.rfind(':')), ":", ports.empty() ? 0 : ports.front());
  return std::unique_ptr<Metrics>(new Metrics(std::move(state)));
}

std::unique_ptr<Metrics> Metrics::Unserved() {
  return std::unique_ptr<Metrics>(new Metrics(std::make_unique<State>()));
}

const std::string& Metrics::address() const { return state_->address; }

prometheus::Registry& Metrics::registry() { return *state_->registry; }

std::string Metrics::Scrape() const {
  // In the exposer's order (Start).
  std::vector<prometheus::MetricFamily> families = state_->engine->Collect();
  auto append = [&families](const prometheus::Collectable& more) {
    for (prometheus::MetricFamily& family : more.Collect()) families.push_back(std::move(family));
  };
  append(*state_->registry);
  append(*state_->process);
  return prometheus::TextSerializer().Serialize(families);
}

GrpcMethodMetrics& Metrics::State::Method(std::string_view service, std::string_view method,
                                          const char* type) {
  std::lock_guard lock(methods_mu);
  std::string key(service);
  key.append("/").append(method);
  std::unique_ptr<GrpcMethodMetrics>& found = methods[key];
  if (found == nullptr) {
    prometheus::Labels labels = {{"grpc_service", std::string(service)},
                                 {"grpc_method", std::string(method)},
                                 {"grpc_type", type}};
    found.reset(new GrpcMethodMetrics{
        this, labels, &grpc_started->Add(labels), &grpc_received->Add(labels),
        &grpc_sent->Add(labels),
        &grpc_seconds->Add(labels, prometheus::Histogram::BucketBoundaries{
                                       0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})});
  }
  return *found;
}

prometheus::Counter& Metrics::State::Handled(GrpcMethodMetrics& method, absl::StatusCode code) {
  const auto index = static_cast<size_t>(code) < method.handled.size()
                         ? static_cast<size_t>(code)
                         : static_cast<size_t>(absl::StatusCode::kUnknown);
  if (prometheus::Counter* counter = method.handled[index].load(std::memory_order_acquire)) {
    return *counter;
  }
  std::lock_guard lock(methods_mu);
  if (prometheus::Counter* counter = method.handled[index].load(std::memory_order_acquire)) {
    return *counter;
  }
  prometheus::Labels labels = method.labels;
  labels["grpc_code"] = CodeName(static_cast<grpc::StatusCode>(index));
  prometheus::Counter* counter = &grpc_handled->Add(labels);
  method.handled[index].store(counter, std::memory_order_release);
  return *counter;
}

GrpcMethodMetrics& Metrics::GrpcMethod(std::string_view service, std::string_view method) const {
  const google::protobuf::ServiceDescriptor* found_service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(std::string(service));
  const google::protobuf::MethodDescriptor* found =
      found_service == nullptr ? nullptr : found_service->FindMethodByName(std::string(method));
  COTASK_CHECK(found != nullptr, (std::string("no gRPC method ") + std::string(service) + "/" +
                                  std::string(method) + " to count")
                                     .c_str());
  return state_->Method(service, method, GrpcType(*found));
}

GrpcCall::GrpcCall(GrpcMethodMetrics* method) : method_(method) {
  if (method_ == nullptr) return;
  start_ = std::chrono::steady_clock::now();
  method_->started->Increment();
}

void GrpcCall::Received() {
  if (method_ != nullptr) method_->received->Increment();
}

void GrpcCall::Sent() {
  if (method_ != nullptr) method_->sent->Increment();
}

void GrpcCall::Handled(absl::StatusCode code) {
  if (method_ == nullptr) return;
  method_->state->Handled(*method_, code).Increment();
  method_->seconds->Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
}

v1::Stats Metrics::Snapshot() const {
  const State& s = *state_;
  const EngineCollector& e = *s.engine;
  auto count = [](const auto* metric) { return static_cast<int64_t>(metric->Value()); };
  v1::Stats stats;
  *stats.mutable_time() =
      TimeUtil::NanosecondsToTimestamp(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  for (size_t k = 0; k < kKinds.size(); ++k) {
    const EngineCollector::Kind& figures = e.kinds[k];
    v1::KindStats& kind = *stats.add_kinds();
    kind.set_kind(kKinds[k]);
    kind.set_created(figures.created.Get());
    for (size_t end = 0; end < kEnds.size(); ++end) {
      (*kind.mutable_finished())[e.end_names[end]] = figures.finished[end].Get();
    }
    kind.set_pending(figures.pending.Get());
    kind.set_running(figures.running.Get());
    kind.set_retries(figures.retries.Get());
    kind.set_cancellations(figures.cancellations.Get());
  }
  stats.set_groups_active(e.groups_active.Get());
  for (size_t end = 0; end < kGroupEnds.size(); ++end) {
    (*stats.mutable_groups_finished())[e.group_end_names[end]] = e.groups_finished[end].Get();
  }
  stats.set_event_log_bytes(e.log_bytes.Get());
  stats.set_event_log_truncated_events(e.log_dropped.Get());
  stats.set_exec_spawns(e.spawns.Get());
  stats.set_exec_spawn_failures(e.spawn_failures.Get());
  stats.set_workers_connected(count(s.workers_connected));
  std::lock_guard lock(s.queues_mu);
  for (const auto& [name, queue] : s.queues) {
    v1::Queue& out = *stats.add_queues();
    out.set_name(name);
    out.set_size(count(queue.size));
    out.set_depth(count(queue.depth));
    out.set_leased(count(queue.leased));
    out.set_workers(static_cast<int32_t>(count(queue.workers)));
    out.set_paused(queue.paused->Value() != 0);
  }
  return stats;
}

void Metrics::OnTaskState(const engine::TaskChange& change) {
  const v1::Task& task = change.task;
  const engine::TaskTimes& times = change.times;
  const v1::Task::State from = change.from;
  const v1::Task::State to = change.to;
  EngineCollector& e = *state_->engine;
  const int k = KindIndex(task);
  EngineCollector::Kind& kind = e.kinds[k];
  if (from == v1::Task::STATE_UNSPECIFIED) kind.created.Add(1);
  const bool was_waiting = from == v1::Task::PENDING || from == v1::Task::QUEUED;
  const bool waiting = to == v1::Task::PENDING || to == v1::Task::QUEUED;
  const int pending_change = static_cast<int>(waiting) - static_cast<int>(was_waiting);
  const int running_change =
      static_cast<int>(to == v1::Task::RUNNING) - static_cast<int>(from == v1::Task::RUNNING);
  if (pending_change != 0 || running_change != 0) {
    kind.pending.Add(pending_change);
    kind.running.Add(running_change);
    if (k == kDispatch) {
      EngineCollector::QueueTasks& queue = e.Queue(task.spec().dispatch().queue());
      queue.pending.Add(pending_change);
      queue.running.Add(running_change);
    }
  }
  if (to == v1::Task::RUNNING && task.attempt() == 1) {
    kind.wait_seconds.Observe(Seconds(times.create, times.start));
  }
  if (from == v1::Task::RUNNING && to == v1::Task::PENDING) kind.retries.Add(1);
  const auto end = std::find(kEnds.begin(), kEnds.end(), to);
  if (end != kEnds.end()) {
    kind.finished[end - kEnds.begin()].Add(1);
    if (to == v1::Task::CANCELLED) kind.cancellations.Add(1);
    if (from == v1::Task::RUNNING) {
      kind.run_seconds.Observe(Seconds(times.start, times.end));
    }
  }
}

void Metrics::OnGroupState(const v1::Group& group, v1::Group::State to) {
  (void)group;
  EngineCollector& e = *state_->engine;
  if (to == v1::Group::OPEN) e.groups_active.Add(1);
  const auto end = std::find(kGroupEnds.begin(), kGroupEnds.end(), to);
  if (end != kGroupEnds.end()) {
    e.groups_active.Add(-1);
    e.groups_finished[end - kGroupEnds.begin()].Add(1);
  }
}

void Metrics::OnEventLogs(int64_t bytes_retained, int64_t events_dropped) {
  state_->engine->log_bytes.Set(bytes_retained);
  if (events_dropped > 0) state_->engine->log_dropped.Add(events_dropped);
}

void Metrics::OnSpawn(bool started) {
  (started ? state_->engine->spawns : state_->engine->spawn_failures).Add(1);
}

void Metrics::OnQueue(const engine::QueueFigures& figures) {
  State::QueueMetrics& queue = state_->Queue(figures.name);
  queue.size->Set(static_cast<double>(figures.size));
  queue.depth->Set(static_cast<double>(figures.depth));
  queue.leased->Set(static_cast<double>(figures.leased));
  queue.workers->Set(static_cast<double>(figures.workers));
  queue.paused->Set(figures.paused ? 1 : 0);
}

void Metrics::OnWorkers(int64_t connected) {
  state_->workers_connected->Set(static_cast<double>(connected));
}

void Metrics::OnLeaseLost(const std::string& queue) { state_->Queue(queue).lost->Increment(); }

void Metrics::OnQueueFull(const std::string& queue) { state_->Queue(queue).full->Increment(); }

}  // namespace cotask::service
