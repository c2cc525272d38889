// The load generator of the benchmarks: one scenario per run, against a server on loopback,
// with many calls in flight from coroutines on one cotask EventLoop (the C++ client's Async
// calls), printing one JSON line of figures. bench/run drives it.
//
//   load --scenario=NAME --target=HOST:PORT [--count=N] [--inflight=K] [--batch=B]
//        [--rate=R] [--server_pid=P] [--queue=Q]
//
// Scenarios:
//   nothing     Ceiling.Nothing, K in flight (or with --rate, R a second, open loop as in
//               latency): calls/s, latency
//   echo        Ceiling.Echo, K streams each sending a message and reading it back: round trips/s
//   run         Scheduler.Run of sleep(0) tasks, K in flight: tasks/s, latency
//   create      CreateTask of sleep(0) tasks into a group, K in flight; then the group closed
//               and awaited (AwaitGroup: its end, which comes after every task's): tasks/s end
//               to end
//   batch       CreateTasks of B sleep(0) tasks a call into a group, K calls in flight; then the
//               group closed and awaited: tasks/s
//   latency     CreateTask of sleep(0) tasks at R a second (open loop, evenly spaced) into a group
//               watched by one Watch: create to RUNNING (the server's timestamps) and create to
//               the end seen by the watcher (this process's clock), and the create calls' own
//               latency: p50, p99, p99.9; without --rate, K in flight (closed loop): the peak
//               of this same work, tasks/s (to the last end seen)
//   exec        Scheduler.Run of exec /bin/true, K in flight: tasks/s
//   spawn       posix_spawn(/bin/true) + waitpid in a plain loop, one at a time: processes/s
//   pending     N sleep tasks delayed by an hour, created in batches of B: the server's resident
//               bytes per pending task (--server_pid)
//   watchers    N Watch streams open on one pending task: the server's resident bytes per stream
//   dispatch    CreateTasks of B dispatch tasks a call on queue Q into a group (workers serve Q),
//               then the group closed and awaited: tasks/s
#include <grpcpp/grpcpp.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "ceiling.grpc.pb.h"
#include "clients/cpp/client.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/runtime/event.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/grpc_ops.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/task.h"

namespace cotask::bench {
namespace {

using google::protobuf::util::TimeUtil;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string scenario;
  std::string target = "127.0.0.1:50051";
  int64_t count = 100'000;
  int64_t inflight = 256;
  int64_t batch = 1000;
  int64_t rate = 0;  // calls a second of an open-loop scenario; 0: closed loop
  int64_t server_pid = 0;
  std::string queue = "bench";
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The time between two of the server's timestamps, in microseconds.
double MicrosBetween(const google::protobuf::Timestamp& from,
                     const google::protobuf::Timestamp& to) {
  return static_cast<double>(TimeUtil::TimestampToNanoseconds(to) -
                             TimeUtil::TimestampToNanoseconds(from)) /
         1e3;
}

// Percentile p (0..1) of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t i =
      std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return sorted[i];
}

// The figures of one run, printed as one JSON object.
class Report {
 public:
  void Add(const std::string& key, double value) { values_.emplace_back(key, value); }
  void AddLatencies(const std::string& prefix, std::vector<double> micros) {
    std::sort(micros.begin(), micros.end());
    Add(prefix + "_p50_us", Percentile(micros, 0.50));
    Add(prefix + "_p99_us", Percentile(micros, 0.99));
    Add(prefix + "_p999_us", Percentile(micros, 0.999));
  }
  std::string Json(const std::string& scenario) const {
    std::vector<std::string> parts = {absl::StrFormat("\"scenario\":\"%s\"", scenario)};
    for (const auto& [key, value] : values_) {
      parts.push_back(absl::StrFormat("\"%s\":%.6g", key, value));
    }
    return "{" + absl::StrJoin(parts, ",") + "}";
  }

 private:
  std::vector<std::pair<std::string, double>> values_;
};

// A calling scenario's figures (closed or open loop): calls a second since `start`, and each
// call's latency.
Report CallReport(int64_t count, Clock::time_point start, std::vector<double> micros) {
  Report report;
  report.Add("per_second", static_cast<double>(count) / Seconds(Clock::now() - start));
  report.AddLatencies("latency", std::move(micros));
  return report;
}

int64_t ResidentBytes(int64_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    int64_t kb = 0;
    if (absl::StartsWith(line, "VmRSS:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(6, line.size() - 6 - 3)), &kb)) {
      return kb * 1024;
    }
  }
  return 0;
}

v1::CreateTaskRequest NoOp(const std::string& group) {
  v1::CreateTaskRequest request;
  request.mutable_spec()->mutable_sleep();  // duration 0
  request.set_group(group);
  return request;
}

std::string NewGroup(Client& client, const std::string& prefix) {
  v1::CreateGroupRequest request;
  request.set_name(
      absl::StrFormat("%s-%d-%d", prefix, getpid(), Clock::now().time_since_epoch().count()));
  request.set_policy(v1::Group::ALL);
  absl::StatusOr<v1::Group> group = client.CreateGroup(request);
  if (!group.ok()) {
    std::fprintf(stderr, "load: CreateGroup: %s\n", group.status().ToString().c_str());
    std::exit(1);
  }
  return group->name();
}

// Tasks started together and awaited together (the first error is the outcome).
class Tasks {
 public:
  void Add(runtime::Task<void> task) { handles_.push_back(runtime::CreateTask(std::move(task))); }
  void Cancel(const std::string& why) {
    for (runtime::TaskHandle<void>& handle : handles_) handle.Cancel(why);
  }
  runtime::Task<void> Wait() {
    absl::Status first;
    for (runtime::TaskHandle<void>& handle : handles_) {
      absl::Status status = co_await handle;
      if (first.ok() && !status.ok()) first = status;
    }
    co_return first;
  }

 private:
  std::vector<runtime::TaskHandle<void>> handles_;
};

// K workers taking turns at `next` until `count` items are done; `one(i)` does item i.
template <class One>
runtime::Task<void> Spread(int64_t count, int64_t inflight, One one) {
  int64_t next = 0;
  Tasks workers;
  for (int64_t k = 0; k < std::min(inflight, count); ++k) {
    workers.Add([](int64_t* next, int64_t count, One* one) -> runtime::Task<void> {
      while (*next < count) {
        const int64_t i = (*next)++;
        COTASK_CO_RETURN_IF_ERROR(co_await (*one)(i));
      }
      co_return absl::OkStatus();
    }(&next, count, &one));
  }
  co_return co_await workers.Wait();
}

// Open loop: call i starts at start + i / rate, whatever came back, `count` in all: issue(i)
// makes call i, into `calls`. Returns the rate offered. A pacing thread wakes this loop when
// calls are due (the loop's own timers are as coarse as gRPC's millisecond poll, and starting
// each millisecond's calls together would measure the bursts' queueing, not the calls): at
// most every kPaceTick, and with one wake-up in flight at a time (a busy loop takes what came
// due meanwhile in one go). (The calls may outlive this coroutine: `issue`, whose captures they
// use, must outlive them. Not cancellable.)
template <class Issue>
runtime::Task<double> OpenLoop(int64_t count, int64_t rate, Tasks* calls, const Issue& issue) {
  constexpr auto kPaceTick = std::chrono::microseconds(50);
  runtime::EventLoop& loop = runtime::internal::CurrentTaskOrDie("load").loop();
  runtime::Event paced;
  std::atomic<int64_t> due{0};     // calls whose time has come (the pacer's count)
  std::atomic<bool> woken{false};  // a wake-up is posted and has not run yet
  int64_t issued = 0;              // (the loop's)
  auto take = [&] {
    woken.store(false);
    for (const int64_t up_to = due.load(); issued < up_to; ++issued) calls->Add(issue(issued));
  };
  const auto start = Clock::now();
  const auto time_of = [&](int64_t i) {
    return start + std::chrono::nanoseconds(i * 1'000'000'000 / rate);
  };
  std::thread pacer([&] {
    prctl(PR_SET_TIMERSLACK, 1UL);  // (the default slack, 50 us, would be most of a gap)
    auto woke = start - kPaceTick;
    for (int64_t i = 0; i < count;) {
      std::this_thread::sleep_until(std::max(time_of(i), woke + kPaceTick));
      woke = Clock::now();
      while (i < count && time_of(i) <= woke) ++i;
      due.store(i);
      if (!woken.exchange(true)) loop.Post(take);
    }
    loop.Post([&] {
      take();
      paced.Set();
    });
  });
  const absl::Status waited = co_await paced.Wait();
  pacer.join();
  if (!waited.ok()) {
    std::fprintf(stderr, "load: the open loop was cancelled: %s\n", waited.ToString().c_str());
    std::exit(1);  // (the pacer's posts use this frame)
  }
  co_return static_cast<double>(count) / Seconds(Clock::now() - start);
}

// Watches the group until `count` child tasks have ended; on_end(task id, when, the event) for
// each.
template <class OnEnd, class OnPending = std::nullptr_t>
runtime::Task<void> WatchEnds(Client* client, std::string group, int64_t count, OnEnd on_end,
                              OnPending on_pending = nullptr) {
  v1::WatchRequest request;
  request.set_group(std::move(group));
  int64_t ended = 0;
  co_return co_await client->WatchAsync(
      request,
      [&](const v1::Event& event) {
        const v1::Task::State state = event.task_state().state();
        if constexpr (!std::is_same_v<OnPending, std::nullptr_t>) {
          if (state == v1::Task::PENDING) on_pending(event.task(), Clock::now());
        }
        if (event.has_task_state() &&
            (state == v1::Task::SUCCEEDED || state == v1::Task::FAILED ||
             state == v1::Task::CANCELLED || state == v1::Task::TIMED_OUT)) {
          on_end(event.task(), Clock::now(), event);
          ++ended;
        }
        return ended < count;
      },
      CallOptions{absl::Hours(1)});
}

runtime::Task<Report> Nothing(const Flags& flags) {
  auto stub =
      Ceiling::NewStub(grpc::CreateChannel(flags.target, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue& queue =
      runtime::internal::CurrentTaskOrDie("load").loop().completion_queue();
  std::vector<double> micros(flags.count);
  const auto start = Clock::now();
  auto call = [&](int64_t i) -> runtime::Task<void> {
    const auto began = Clock::now();
    grpc::ClientContext context;
    Empty reply;
    grpc::Status status;
    auto reader = stub->AsyncNothing(&context, Empty(), &queue);
    co_await runtime::ClientCallOp(&context,
                                   [&](void* tag) { reader->Finish(&reply, &status, tag); });
    if (!status.ok()) co_return absl::UnavailableError(status.error_message());
    micros[i] = Seconds(Clock::now() - began) * 1e6;
    co_return absl::OkStatus();
  };
  if (flags.rate > 0) {
    Tasks calls;
    COTASK_CO_RETURN_IF_ERROR((co_await OpenLoop(flags.count, flags.rate, &calls, call)).status());
    COTASK_CO_RETURN_IF_ERROR(co_await calls.Wait());
  } else {
    COTASK_CO_RETURN_IF_ERROR(co_await Spread(flags.count, flags.inflight, call));
  }
  co_return CallReport(flags.count, start, std::move(micros));
}

runtime::Task<Report> EchoScenario(const Flags& flags) {
  auto stub =
      Ceiling::NewStub(grpc::CreateChannel(flags.target, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue& queue =
      runtime::internal::CurrentTaskOrDie("load").loop().completion_queue();
  const int64_t streams = std::min(flags.inflight, flags.count);
  const int64_t each = flags.count / streams;
  const auto start = Clock::now();
  Tasks group;
  for (int64_t s = 0; s < streams; ++s) {
    group.Add([](Ceiling::Stub* stub, grpc::CompletionQueue* queue,
                 int64_t each) -> runtime::Task<void> {
      grpc::ClientContext context;
      auto stream = stub->PrepareAsyncEcho(&context, queue);
      if (!co_await runtime::ClientCallOp(&context, [&](void* tag) { stream->StartCall(tag); })) {
        co_return absl::UnavailableError("Echo did not start");
      }
      Chunk chunk;
      chunk.set_data("x");
      for (int64_t i = 0; i < each; ++i) {
        co_await runtime::ClientCallOp(&context, [&](void* tag) { stream->Write(chunk, tag); });
        if (!co_await runtime::ClientCallOp(&context,
                                            [&](void* tag) { stream->Read(&chunk, tag); })) {
          co_return absl::UnavailableError("Echo ended early");
        }
      }
      co_await runtime::ClientCallOp(&context, [&](void* tag) { stream->WritesDone(tag); });
      grpc::Status status;
      co_await runtime::ClientCallOp(&context, [&](void* tag) { stream->Finish(&status, tag); });
      co_return absl::OkStatus();
    }(stub.get(), &queue, each));
  }
  COTASK_CO_RETURN_IF_ERROR(co_await group.Wait());
  Report report;
  report.Add("per_second", static_cast<double>(each * streams) / Seconds(Clock::now() - start));
  co_return report;
}

runtime::Task<Report> RunScenario(const Flags& flags, bool exec) {
  ClientOptions options;
  options.server = flags.target;
  Client client(options);
  std::vector<double> micros(flags.count);
  const auto start = Clock::now();
  COTASK_CO_RETURN_IF_ERROR(
      co_await Spread(flags.count, flags.inflight, [&](int64_t i) -> runtime::Task<void> {
        v1::CreateTaskRequest request;
        if (exec) {
          request.mutable_spec()->mutable_exec()->add_argv("/bin/true");
        } else {
          request.mutable_spec()->mutable_sleep();
        }
        const auto began = Clock::now();
        COTASK_CO_ASSIGN_OR_RETURN(v1::Task task, co_await client.RunAsync(std::move(request)));
        if (task.state() != v1::Task::SUCCEEDED) {
          co_return absl::InternalError(absl::StrCat(
              "a task ended ", v1::Task::State_Name(task.state()), ": ", task.error().message()));
        }
        micros[i] = Seconds(Clock::now() - began) * 1e6;
        co_return absl::OkStatus();
      }));
  co_return CallReport(flags.count, start, std::move(micros));
}

// create, batch and dispatch: tasks into a group, then the group closed and watched to its end
// (every task ended).
runtime::Task<Report> Throughput(const Flags& flags, bool batched, bool dispatch) {
  ClientOptions options;
  options.server = flags.target;
  Client client(options);
  const std::string group = NewGroup(client, flags.scenario);
  const int64_t per_call = batched ? flags.batch : 1;
  const int64_t calls = (flags.count + per_call - 1) / per_call;
  const int64_t total = calls * per_call;
  const auto start = Clock::now();
  COTASK_CO_RETURN_IF_ERROR(
      co_await Spread(calls, flags.inflight, [&](int64_t) -> runtime::Task<void> {
        v1::CreateTasksRequest request;
        for (int64_t j = 0; j < per_call; ++j) {
          v1::CreateTaskRequest one = NoOp(group);
          if (dispatch) {
            one.mutable_spec()->mutable_dispatch()->set_queue(flags.queue);
            one.mutable_spec()->mutable_dispatch()->set_payload("x");
          }
          *request.add_requests() = std::move(one);
        }
        if (!batched) {
          COTASK_CO_RETURN_IF_ERROR(
              (co_await client.CreateTaskAsync(request.requests(0))).status());
        } else {
          COTASK_CO_RETURN_IF_ERROR(
              (co_await client.CreateTasksAsync(std::move(request))).status());
        }
        co_return absl::OkStatus();
      }));
  const auto created = Clock::now();
  // Every task has ended when the closed group has: its end is seen by watching the group's log
  // from the close on, as the clients' TaskGroups wait (not replaying an event per task).
  COTASK_CO_ASSIGN_OR_RETURN(v1::Group closed, co_await client.CloseGroupAsync(group));
  COTASK_CO_ASSIGN_OR_RETURN(v1::Group ended, co_await client.AwaitGroupAsync(
                                                  std::move(closed), CallOptions{absl::Hours(1)}));
  if (ended.state() != v1::Group::SUCCEEDED || ended.active_children() != 0 ||
      ended.children() != total) {
    co_return absl::InternalError(absl::StrCat("the group ended ",
                                               v1::Group::State_Name(ended.state()), " with ",
                                               ended.children(), " children of ", total));
  }
  const auto last_end = Clock::now();
  Report report;
  report.Add("per_second", static_cast<double>(total) / Seconds(last_end - start));
  report.Add("create_per_second", static_cast<double>(total) / Seconds(created - start));
  co_return report;
}

runtime::Task<Report> Latency(const Flags& flags) {
  ClientOptions options;
  options.server = flags.target;
  Client client(options);
  const std::string group = NewGroup(client, "latency");
  absl::flat_hash_map<std::string, Clock::time_point> sent;
  absl::flat_hash_map<std::string, Clock::time_point> seen;
  absl::flat_hash_map<std::string, Clock::time_point> pending_seen;
  std::vector<double> create_call;
  create_call.reserve(flags.count);
  // From the end event's time (the server's clock, when it was logged) to this process seeing
  // it (the same machine's clock): the delivery alone, without the create call.
  std::vector<double> end_delivery;
  end_delivery.reserve(flags.count);
  runtime::TaskHandle<void> watch = runtime::CreateTask(WatchEnds(
      &client, group, flags.count,
      [&](const std::string& id, Clock::time_point at, const v1::Event& event) {
        seen.emplace(id, at);
        end_delivery.push_back(static_cast<double>(absl::GetCurrentTimeNanos() -
                                                   TimeUtil::TimestampToNanoseconds(event.time())) /
                               1e3);
      },
      [&](const std::string& id, Clock::time_point at) { pending_seen.emplace(id, at); }));
  auto create = [&](int64_t) -> runtime::Task<void> {
    const auto began = Clock::now();
    COTASK_CO_ASSIGN_OR_RETURN(v1::Task task, co_await client.CreateTaskAsync(NoOp(group)));
    sent.emplace(task.id(), began);
    create_call.push_back(Seconds(Clock::now() - began) * 1e6);
    co_return absl::OkStatus();
  };
  const auto start = Clock::now();
  double offered = 0;
  if (flags.rate > 0) {
    Tasks creates;
    COTASK_CO_ASSIGN_OR_RETURN(offered,
                               co_await OpenLoop(flags.count, flags.rate, &creates, create));
    COTASK_CO_RETURN_IF_ERROR(co_await creates.Wait());
  } else {
    COTASK_CO_RETURN_IF_ERROR(co_await Spread(flags.count, flags.inflight, create));
  }
  COTASK_CO_RETURN_IF_ERROR(co_await watch);
  const double per_second = static_cast<double>(flags.count) / Seconds(Clock::now() - start);
  // (The group's watcher sees each task's PENDING, then its end: the first says what the
  // watch path alone costs.)
  std::vector<double> to_result;
  std::vector<double> to_pending_seen;
  for (const auto& [id, began] : sent) {
    if (auto it = seen.find(id); it != seen.end())
      to_result.push_back(Seconds(it->second - began) * 1e6);
    if (auto it = pending_seen.find(id); it != pending_seen.end())
      to_pending_seen.push_back(Seconds(it->second - began) * 1e6);
  }
  // Create to RUNNING and to its end, from the server's own timestamps.
  std::vector<double> to_running;
  std::vector<double> to_end;
  v1::ListTasksRequest list;
  list.set_group(group);
  list.set_page_size(1000);
  while (true) {
    COTASK_CO_ASSIGN_OR_RETURN(v1::ListTasksResponse page, co_await client.ListTasksAsync(list));
    for (const v1::Task& task : page.tasks()) {
      to_end.push_back(MicrosBetween(task.create_time(), task.end_time()));
      to_running.push_back(MicrosBetween(task.create_time(), task.start_time()));
    }
    if (page.next_page_token().empty()) break;
    list.set_page_token(page.next_page_token());
  }
  Report report;
  if (flags.rate > 0) report.Add("offered_per_second", offered);
  report.Add("per_second", per_second);
  report.AddLatencies("to_running", std::move(to_running));
  report.AddLatencies("to_end", std::move(to_end));
  report.AddLatencies("to_result", std::move(to_result));
  report.AddLatencies("to_pending_seen", std::move(to_pending_seen));
  report.AddLatencies("create_call", std::move(create_call));
  report.AddLatencies("end_delivery", std::move(end_delivery));
  co_return report;
}

Report Spawn(const Flags& flags) {
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  const auto start = Clock::now();
  for (int64_t i = 0; i < flags.count; ++i) {
    pid_t pid = 0;
    if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) std::exit(1);
    int status = 0;
    waitpid(pid, &status, 0);
  }
  Report report;
  report.Add("per_second", static_cast<double>(flags.count) / Seconds(Clock::now() - start));
  return report;
}

runtime::Task<Report> Pending(const Flags& flags) {
  ClientOptions options;
  options.server = flags.target;
  Client client(options);
  const int64_t before = ResidentBytes(flags.server_pid);
  const int64_t calls = (flags.count + flags.batch - 1) / flags.batch;
  COTASK_CO_RETURN_IF_ERROR(
      co_await Spread(calls, flags.inflight, [&](int64_t) -> runtime::Task<void> {
        v1::CreateTasksRequest request;
        for (int64_t j = 0; j < flags.batch; ++j) {
          v1::CreateTaskRequest one = NoOp("");
          one.mutable_spec()->mutable_sleep()->mutable_duration()->set_seconds(1);
          *one.mutable_options()->mutable_delay() = TimeUtil::SecondsToDuration(3600);
          *request.add_requests() = std::move(one);
        }
        COTASK_CO_RETURN_IF_ERROR((co_await client.CreateTasksAsync(std::move(request))).status());
        co_return absl::OkStatus();
      }));
  // Let the server settle (its coroutines have all started) before reading its size.
  COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(std::chrono::seconds(1)));
  const int64_t after = ResidentBytes(flags.server_pid);
  Report report;
  report.Add("tasks", static_cast<double>(calls * flags.batch));
  report.Add("rss_before", static_cast<double>(before));
  report.Add("rss_after", static_cast<double>(after));
  report.Add("bytes_per_item",
             static_cast<double>(after - before) / static_cast<double>(calls * flags.batch));
  co_return report;
}

runtime::Task<Report> Watchers(const Flags& flags) {
  ClientOptions options;
  options.server = flags.target;
  Client client(options);
  v1::CreateTaskRequest pending = NoOp("");
  *pending.mutable_options()->mutable_delay() = TimeUtil::SecondsToDuration(3600);
  COTASK_CO_ASSIGN_OR_RETURN(v1::Task task, co_await client.CreateTaskAsync(pending));
  COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(std::chrono::milliseconds(200)));
  const int64_t before = ResidentBytes(flags.server_pid);
  int64_t open = 0;
  runtime::Event all_open;
  Tasks streams;
  for (int64_t i = 0; i < flags.count; ++i) {
    streams.Add([](Client* client, std::string id, int64_t* open, int64_t count,
                   runtime::Event* all_open) -> runtime::Task<void> {
      v1::WatchRequest request;
      request.set_task(std::move(id));
      bool counted = false;
      absl::Status status = co_await client->WatchAsync(
          request,
          [&](const v1::Event&) {
            if (!counted && ++*open == count) all_open->Set();
            counted = true;
            return true;
          },
          CallOptions{absl::Hours(1)});
      co_return absl::IsCancelled(status) ? absl::OkStatus() : status;
    }(&client, task.id(), &open, flags.count, &all_open));
  }
  COTASK_CO_RETURN_IF_ERROR(co_await all_open.Wait());
  COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(std::chrono::milliseconds(500)));
  const int64_t after = ResidentBytes(flags.server_pid);
  streams.Cancel("done");
  (void)co_await streams.Wait();
  Report report;
  report.Add("streams", static_cast<double>(flags.count));
  report.Add("rss_before", static_cast<double>(before));
  report.Add("rss_after", static_cast<double>(after));
  report.Add("bytes_per_item",
             static_cast<double>(after - before) / static_cast<double>(flags.count));
  co_return report;
}

runtime::Task<Report> Scenario(const Flags& flags) {
  const std::string& s = flags.scenario;
  if (s == "nothing") co_return co_await Nothing(flags);
  if (s == "echo") co_return co_await EchoScenario(flags);
  if (s == "run") co_return co_await RunScenario(flags, /*exec=*/false);
  if (s == "exec") co_return co_await RunScenario(flags, /*exec=*/true);
  if (s == "create") co_return co_await Throughput(flags, /*batched=*/false, /*dispatch=*/false);
  if (s == "batch") co_return co_await Throughput(flags, /*batched=*/true, /*dispatch=*/false);
  if (s == "dispatch") co_return co_await Throughput(flags, /*batched=*/true, /*dispatch=*/true);
  if (s == "latency") co_return co_await Latency(flags);
  if (s == "pending") co_return co_await Pending(flags);
  if (s == "watchers") co_return co_await Watchers(flags);
  co_return absl::InvalidArgumentError(absl::StrCat("no scenario ", s));
}

}  // namespace
}  // namespace cotask::bench

int main(int argc, char** argv) {
  // As cotaskd does: the same client for every server.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  cotask::bench::Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    bool ok = true;
    if (name == "--scenario") {
      flags.scenario = value;
    } else if (name == "--target") {
      flags.target = value;
    } else if (name == "--queue") {
      flags.queue = value;
    } else if (name == "--count") {
      ok = absl::SimpleAtoi(value, &flags.count);
    } else if (name == "--inflight") {
      ok = absl::SimpleAtoi(value, &flags.inflight);
    } else if (name == "--batch") {
      ok = absl::SimpleAtoi(value, &flags.batch);
    } else if (name == "--rate") {
      ok = absl::SimpleAtoi(value, &flags.rate);
    } else if (name == "--server_pid") {
      ok = absl::SimpleAtoi(value, &flags.server_pid);
    } else {
      ok = false;
    }
    if (!ok || flags.count < 1 || flags.inflight < 1 || flags.batch < 1 || flags.rate < 0) {
      std::fprintf(stderr, "load: bad argument %s\n", arg.c_str());
      return 2;
    }
  }
  cotask::bench::Report report;
  if (flags.scenario == "spawn") {
    report = cotask::bench::Spawn(flags);
  } else {
    cotask::runtime::EventLoop loop;
    absl::StatusOr<cotask::bench::Report> result =
        loop.RunUntilComplete(cotask::bench::Scenario(flags));
    if (!result.ok()) {
      std::fprintf(stderr, "load: %s: %s\n", flags.scenario.c_str(),
                   result.status().ToString().c_str());
      return 1;
    }
    report = *std::move(result);
  }
  std::printf("%s\n", report.Json(flags.scenario).c_str());
  return 0;
}
