// The engine's coordination: named events, named semaphores, and runners.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/errors.h"
#include "scheduler/engine/records.h"
#include "scheduler/engine/validation.h"
#include "scheduler/runtime/status_macros.h"

namespace cotask::engine {
namespace {

// Reports a runner keeps for its stream, and failures it remembers for its end.
constexpr size_t kMaxRunnerReports = 1000;
constexpr absl::Duration kDefaultSlowTaskDuration = absl::Milliseconds(100);

}  // namespace

// ---------------------------------------------------------------------------------------------
// Named events

Engine::EventRecord& Engine::EnsureEvent(const std::string& name) {
  auto [it, inserted] = events_.try_emplace(name);
  if (inserted) {
    it->second = std::make_unique<EventRecord>();
    it->second->event.set_name(name);
    *it->second->event.mutable_update_time() = NowProto();
  }
  return *it->second;
}

namespace {

v1::NamedEvent Describe(const v1::NamedEvent& event, int waiting) {
  v1::NamedEvent out = event;
  out.set_waiting_tasks(waiting);
  return out;
}

}  // namespace

absl::StatusOr<Engine::EventRecord*> Engine::NamedEventToChange(const std::string& name) {
  COTASK_RETURN_IF_ERROR(ValidateName(name, "name"));
  if (!events_.contains(name) && events_.size() >= options_.max_events) {
    return Error(absl::StatusCode::kResourceExhausted, "TOO_MANY_EVENTS",
                 absl::StrCat("the server has ", events_.size(), " named events (--max_events)"),
                 {{"bound", absl::StrCat(options_.max_events)}});
  }
  return &EnsureEvent(name);
}

absl::StatusOr<v1::NamedEvent> Engine::SetEvent(const v1::SetEventRequest& request) {
  COTASK_ASSIGN_OR_RETURN(EventRecord * found, NamedEventToChange(request.name()));
  EventRecord& event = *found;
  if (!event.signal.is_set()) {
    event.signal.Set();  // wakes every task waiting for it
    event.event.set_is_set(true);
    *event.event.mutable_update_time() = NowProto();
  }
  return Describe(event.event, event.waiting);
}

absl::StatusOr<v1::NamedEvent> Engine::ClearEvent(const v1::ClearEventRequest& request) {
  COTASK_ASSIGN_OR_RETURN(EventRecord * found, NamedEventToChange(request.name()));
  EventRecord& event = *found;
  if (event.signal.is_set()) {
    event.signal.Clear();
    event.event.set_is_set(false);
    *event.event.mutable_update_time() = NowProto();
  }
  return Describe(event.event, event.waiting);
}

absl::StatusOr<v1::NamedEvent> Engine::GetEvent(const v1::GetEventRequest& request) const {
  COTASK_RETURN_IF_ERROR(ValidateName(request.name(), "name"));
  auto it = events_.find(request.name());
  if (it == events_.end()) {
    return Error(absl::StatusCode::kNotFound, "EVENT_NOT_FOUND",
                 absl::StrCat("no event named ", request.name(),
                              " (an event exists once set, cleared or waited for)"),
                 {{"event", request.name()}});
  }
  return Describe(it->second->event, it->second->waiting);
}

// ---------------------------------------------------------------------------------------------
// Named semaphores

absl::StatusOr<v1::Semaphore> Engine::CreateSemaphore(const v1::CreateSemaphoreRequest& request) {
  COTASK_RETURN_IF_ERROR(ValidateName(request.name(), "name"));
  if (request.limit() < 1 || request.limit() > kMaxSemaphoreLimit) {
    return InvalidField("limit", absl::StrCat(request.limit(), " is not 1 to 1000000"),
                        absl::StrCat(kMaxSemaphoreLimit));
  }
  if (permits_.Limit(request.name()) == 0 && permits_.size() >= options_.max_semaphores) {
    return Error(absl::StatusCode::kResourceExhausted, "TOO_MANY_SEMAPHORES",
                 absl::StrCat("the server has ", permits_.size(), " semaphores (--max_semaphores)"),
                 {{"bound", absl::StrCat(options_.max_semaphores)}});
  }
  COTASK_RETURN_IF_ERROR(permits_.Declare(request.name(), request.limit()));
  v1::Semaphore out;
  permits_.Describe(request.name(), &out);
  return out;
}

absl::StatusOr<v1::Semaphore> Engine::GetSemaphore(const v1::GetSemaphoreRequest& request) const {
  COTASK_RETURN_IF_ERROR(ValidateName(request.name(), "name"));
  v1::Semaphore out;
  if (!permits_.Describe(request.name(), &out)) {
    return Error(absl::StatusCode::kNotFound, "SEMAPHORE_NOT_FOUND",
                 absl::StrCat("no semaphore named ", request.name(),
                              " (declare it with --semaphores or CreateSemaphore)"),
                 {{"semaphore", request.name()}});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Runners

absl::StatusOr<v1::RunnerResponse> Engine::OpenRunner(const v1::OpenRunnerRequest& request) {
  if (draining_) {
    return Error(absl::StatusCode::kUnavailable, "DRAINING",
                 "the server is shutting down and opens no runners");
  }
  COTASK_RETURN_IF_ERROR(ValidateLabels(request.labels(), "open.labels", LabelBoundsOf(options_)));
  if (request.env_size() > static_cast<int>(options_.max_exec_env)) {
    return InvalidField("open.env",
                        absl::StrCat(request.env_size(), " variables, more than the limit"),
                        absl::StrCat(options_.max_exec_env));
  }
  size_t env_bytes = 0;
  for (const auto& [name, value] : request.env()) {
    if (!IsEnvName(name) || name == "PATH") {
      return InvalidField(absl::StrCat("open.env[\"", absl::CHexEscape(name), "\"]"),
                          name == "PATH" ? "PATH is set by the server (--exec_path)"
                                         : "not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
    }
    if (value.find('\0') != std::string::npos) {
      return InvalidField(absl::StrCat("open.env[\"", name, "\"]"), "contains a NUL byte");
    }
    env_bytes += name.size() + value.size() + 2;
  }
  COTASK_RETURN_IF_ERROR(ValidateBytes(env_bytes, "open.env", options_.max_exec_bytes));
  absl::Duration slow = kDefaultSlowTaskDuration;
  if (request.has_slow_task_duration()) {
    COTASK_ASSIGN_OR_RETURN(
        slow, ValidateDuration(request.slow_task_duration(), "open.slow_task_duration",
                               options_.max_duration));
    if (slow == absl::ZeroDuration()) slow = kDefaultSlowTaskDuration;
  }
  if (runners_.size() >= options_.max_runners) {
    return Error(absl::StatusCode::kResourceExhausted, "TOO_MANY_RUNNERS",
                 absl::StrCat("the server has ", runners_.size(), " runners open (--max_runners)"),
                 {{"bound", absl::StrCat(options_.max_runners)}});
  }
  last_runner_micros_ = std::max(absl::ToUnixMicros(absl::Now()), last_runner_micros_ + 1);
  auto runner = std::make_unique<RunnerRecord>();
  runner->id = absl::StrFormat("r%014x", last_runner_micros_);
  runner->context = request;
  runner->slow_task_duration = slow;
  v1::RunnerResponse opened;
  opened.mutable_opened()->set_runner(runner->id);
  runners_.emplace(runner->id, std::move(runner));
  return opened;
}

absl::StatusOr<Engine::RunnerRecord*> Engine::FindOpenRunner(const std::string& id,
                                                             const char* field) const {
  auto it = runners_.find(id);
  if (it == runners_.end()) {
    return InvalidField(field, absl::StrCat("no open runner ", absl::CHexEscape(id)));
  }
  if (it->second->closing) {
    return Error(absl::StatusCode::kFailedPrecondition, "RUNNER_CLOSING",
                 absl::StrCat("runner ", id, " is ending and takes nothing new"), {{"runner", id}});
  }
  return it->second.get();
}

void Engine::ApplyRunnerContext(const RunnerRecord& runner, v1::CreateTaskRequest* request) {
  // The request's own entries win (Map::insert keeps what is there).
  for (const auto& [key, value] : runner.context.labels()) {
    request->mutable_labels()->insert({key, value});
  }
  if (request->spec().has_exec()) {
    for (const auto& [name, value] : runner.context.env()) {
      request->mutable_spec()->mutable_exec()->mutable_env()->insert({name, value});
    }
  }
}

void Engine::PushRunnerReport(RunnerRecord& runner, v1::RunnerResponse report) {
  if (runner.reports.size() >= kMaxRunnerReports) {
    ++runner.reports_dropped;
    return;
  }
  runner.reports.push_back(std::move(report));
  runner.reports_changed->Set();
}

void Engine::WatchSlowTask(TaskRecord& record) {
  RunnerRecord& runner = *record.runner;
  if (!runner.context.debug()) return;
  record.rare().slow_timer = loop_.CallLater(
      ToChrono(runner.slow_task_duration),
      [this, id = IdOf(record), attempt = record.task.attempt()] {
        TaskRecord* found = FindRecord(id);
        if (found == nullptr) return;
        TaskRecord& task = *found;
        if (task.runner == nullptr || task.task.state() != v1::Task::RUNNING ||
            task.task.attempt() != attempt) {
          return;
        }
        v1::RunnerResponse report;
        v1::SlowTask& slow = *report.mutable_slow_task();
        slow.set_task(id);
        slow.set_attempt(attempt);
        const absl::Duration running = absl::Now() - absl::FromUnixNanos(task.times.start);
        slow.mutable_running()->set_seconds(absl::ToInt64Seconds(running));
        slow.mutable_running()->set_nanos(
            static_cast<int32_t>(absl::ToInt64Nanoseconds(running % absl::Seconds(1))));
        PushRunnerReport(*task.runner, std::move(report));
      });
}

void Engine::RunnerTaskEnded(TaskRecord& record) {
  RunnerRecord& runner = *record.runner;
  runner.tasks.erase(IdOf(record));
  const v1::Task::State state = record.task.state();
  // A group's children's failures are read with the group's.
  if (runner.context.debug() && record.group == nullptr &&
      (state == v1::Task::FAILED || state == v1::Task::TIMED_OUT) &&
      runner.failed_tasks.size() < kMaxRunnerReports) {
    runner.failed_tasks.push_back(IdOf(record));
  }
}

runtime::Task<std::vector<v1::RunnerResponse>> Engine::NextRunnerReports(std::string id) {
  while (true) {
    auto it = runners_.find(id);
    if (it == runners_.end() || it->second->closing) co_return std::vector<v1::RunnerResponse>{};
    RunnerRecord& runner = *it->second;
    if (!runner.reports.empty()) {
      std::vector<v1::RunnerResponse> out(std::make_move_iterator(runner.reports.begin()),
                                          std::make_move_iterator(runner.reports.end()));
      runner.reports.clear();
      runner.reports_changed->Clear();
      co_return out;
    }
    std::shared_ptr<runtime::Event> changed = runner.reports_changed;
    COTASK_CO_RETURN_IF_ERROR(co_await changed->Wait());
  }
}

runtime::Task<std::vector<v1::RunnerResponse>> Engine::CloseRunner(std::string id,
                                                                   std::string reason) {
  auto it = runners_.find(id);
  if (it == runners_.end()) co_return std::vector<v1::RunnerResponse>{};
  RunnerRecord* runner = it->second.get();
  runner->closing = true;
  runner->reports_changed->Set();  // the stream's reader stops
  const std::string message = absl::StrCat("runner ", id, " ended: ", reason);
  v1::RunnerResponse closing;
  v1::RunnerClosed& closed = *closing.mutable_closed();
  closed.set_reason(message);
  // Groups first (their children go with them), then the tasks that are left.
  const std::vector<std::string> groups(runner->groups.begin(), runner->groups.end());
  for (const std::string& name : groups) {
    GroupRecord& group = *groups_.at(name);
    if (group.group.detached() || IsTerminal(group.group.state())) continue;
    CancelGroupRecord(group, message);
    closed.add_cancelled_groups(name);
  }
  const std::vector<std::string> tasks(runner->tasks.begin(), runner->tasks.end());
  for (const std::string& task_id : tasks) {
    TaskRecord& task = RecordOf(task_id);
    if (task.task.detached() || IsTerminal(task.task.state())) continue;
    CancelTaskRecord(task, message);
    closed.add_cancelled_tasks(task_id);
  }
  // asyncio.run waits for what it cancelled to end; so does the runner, until cancelled itself.
  absl::Status waited;
  auto ended = std::make_shared<runtime::Event>();
  for (const std::string& task_id : closed.cancelled_tasks()) {
    TaskRecord* task = FindRecord(task_id);
    if (!waited.ok() || task == nullptr) continue;
    ended->Clear();
    AddEndWaiter(*task, ended);
    waited = co_await ended->Wait();
  }
  for (const std::string& name : closed.cancelled_groups()) {
    while (waited.ok()) {
      auto group = groups_.find(name);
      if (group == groups_.end() || IsTerminal(group->second->group.state())) break;
      std::shared_ptr<runtime::Event> changed = group->second->log.Changed();
      waited = co_await changed->Wait();
    }
  }
  std::vector<v1::RunnerResponse> last;
  for (const std::string& task_id : runner->failed_tasks) {
    const TaskRecord* task = FindRecord(task_id);
    if (task == nullptr || task->outcome_read) continue;
    v1::UnreadFailure& unread = *last.emplace_back().mutable_unread_failure();
    unread.set_task(task_id);
    unread.set_state(task->task.state());
    *unread.mutable_error() = task->task.error();
  }
  closed.set_reports_dropped(runner->reports_dropped);
  last.push_back(std::move(closing));
  // What it still owns (the detached, and what outlived the wait) forgets it.
  for (const std::string& task_id : runner->tasks) {
    if (TaskRecord* task = FindRecord(task_id); task != nullptr) task->runner = nullptr;
  }
  for (const std::string& name : runner->groups) {
    if (auto group = groups_.find(name); group != groups_.end()) group->second->runner = nullptr;
  }
  runners_.erase(id);
  co_return last;
}

}  // namespace cotask::engine
