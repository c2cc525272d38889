#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/errors.h"
#include "scheduler/engine/records.h"
#include "scheduler/engine/validation.h"
#include "scheduler/process/process_supervisor.h"
#include "scheduler/runtime/check.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/timeout.h"

// A task's life: what it waits for, its attempts, its executors, and its state changes.

namespace cotask::engine {
namespace {

absl::Status CancelledError(const v1::Task& task) {
  return Error(absl::StatusCode::kCancelled, "CANCELLED",
               absl::StrCat("cancelled: ", task.cancel_message()));
}

// The wait before the attempt after `attempt`.
absl::Duration Backoff(const v1::RetryPolicy& retry, int attempt) {
  const absl::Duration initial =
      retry.has_initial_backoff() ? ToDuration(retry.initial_backoff()) : absl::Seconds(1);
  const absl::Duration max =
      retry.has_max_backoff() ? ToDuration(retry.max_backoff()) : absl::Hours(1);
  const double multiplier = retry.multiplier() == 0 ? 2 : retry.multiplier();
  absl::Duration backoff = initial;
  for (int i = 1; i < attempt && backoff < max; ++i) backoff *= multiplier;
  return std::min(backoff, max);
}

bool Retried(const v1::RetryPolicy& retry, v1::Task::State outcome) {
  if (retry.retry_on().empty())
    return outcome == v1::Task::FAILED || outcome == v1::Task::TIMED_OUT;
  return std::find(retry.retry_on().begin(), retry.retry_on().end(), outcome) !=
         retry.retry_on().end();
}

}  // namespace

runtime::Task<void> Engine::Life(TaskRecord* record) {
  record->started = true;
  v1::Task& task = record->task;
  const v1::TaskOptions& options = task.options();
  // What it waits for before its first attempt, in this order; each wait is cancellable.
  absl::Status ready;
  if (!options.after().empty()) ready = co_await AwaitDependencies(record);
  if (ready.ok() && task.has_start_after()) {
    *task.mutable_waiting()->mutable_until() = task.start_after();
    const absl::Duration wait = ToTime(task.start_after()) - absl::Now();
    if (wait > absl::ZeroDuration()) ready = co_await runtime::Sleep(ToChrono(wait));
    task.mutable_waiting()->clear_until();
  }
  if (ready.ok() && !options.wait_events().empty()) ready = co_await AwaitEvents(record);
  if (!ready.ok()) {
    Transition(*record, absl::IsCancelled(ready) ? v1::Task::CANCELLED : v1::Task::FAILED,
               absl::IsCancelled(ready) ? CancelledError(task) : ready);
    co_return absl::OkStatus();
  }

  const absl::Duration timeout =
      options.has_timeout() ? ToDuration(options.timeout()) : absl::ZeroDuration();
  const int max_attempts = std::max(options.retry().max_attempts(), 1);
  while (true) {
    // Permits, for this attempt: all at once, given back when the attempt ends (the claim's
    // destruction), after its end is recorded.
    std::unique_ptr<Permits::Claim> claim;
    if (!options.acquire().empty()) {
      claim = permits_.Acquire(IdOf(*record), options.acquire());
      if (!claim->granted()) {
        *task.mutable_waiting()->mutable_permits() = options.acquire();
        absl::Status granted = co_await claim->granted_event().Wait();
        task.clear_waiting();
        if (!granted.ok()) {
          Transition(*record, v1::Task::CANCELLED, CancelledError(task));
          co_return absl::OkStatus();
        }
      }
    }
    if (record->dispatch != nullptr) {
      Transition(*record, v1::Task::QUEUED);
      // In its queue until a worker takes it (the assignment makes it RUNNING).
      if (!(co_await AwaitWorker(record)).ok()) {
        Transition(*record, v1::Task::CANCELLED, CancelledError(task));
        co_return absl::OkStatus();
      }
    } else {
      // Queued and running at once: nothing runs between the two (TaskRecord::deferred_events
      // makes both from the start time).
      const int64_t now = NowNanos();
      Transition(*record, v1::Task::QUEUED, {}, now);
      Transition(*record, v1::Task::RUNNING, {}, now);
    }
    // (Not a conditional expression: GCC 12 mishandles co_await inside ?:.)
    runtime::ResultOf<Outcome> outcome = Outcome{};  // (set by one of the two branches)
    if (timeout > absl::ZeroDuration()) {
      outcome = co_await runtime::Timeout(ToChrono(timeout), Execute(record));
    } else if (task.spec().has_sleep()) {
      // In this frame: a sleep task without a timeout needs no executor coroutine of its own.
      const absl::Status slept = co_await runtime::Sleep(ToChrono(SleepDuration(*record)));
      outcome = slept.ok() ? runtime::ResultOf<Outcome>(SleepOutcome(*record)) : slept;
    } else {
      outcome = co_await Execute(record);
    }
    v1::Task::State end = v1::Task::SUCCEEDED;
    absl::Status error;
    if (outcome.ok()) {
      if (!outcome->status.ok()) {
        end = v1::Task::FAILED;
        error = outcome->status;
      }
    } else if (absl::IsDeadlineExceeded(outcome.status())) {
      end = v1::Task::TIMED_OUT;
      error = Error(
          absl::StatusCode::kDeadlineExceeded, "TIMED_OUT",
          absl::StrCat("the task ran longer than its timeout of ", absl::FormatDuration(timeout)));
    } else if (absl::IsCancelled(outcome.status())) {
      end = v1::Task::CANCELLED;
      error = CancelledError(task);
    } else {
      end = v1::Task::FAILED;
      error = outcome.status();
    }
    // Retry: never a cancelled task (nor one whose cancellation is on its way).
    if (end == v1::Task::SUCCEEDED || end == v1::Task::CANCELLED ||
        task.attempt() >= max_attempts || !Retried(options.retry(), end) ||
        !task.cancel_message().empty()) {
      Transition(*record, end, error);
      co_return absl::OkStatus();
    }
    const absl::Time retry_time = absl::Now() + Backoff(options.retry(), task.attempt());
    EndAttempt(*record, end, error, retry_time);
    claim.reset();
    if (absl::Status waited = co_await runtime::Sleep(ToChrono(retry_time - absl::Now()));
        !waited.ok()) {
      Transition(*record, v1::Task::CANCELLED, CancelledError(task));
      co_return absl::OkStatus();
    }
  }
}

runtime::Task<void> Engine::AwaitDependencies(TaskRecord* record) {
  const auto& after = record->task.options().after();
  v1::Waiting& waiting = *record->task.mutable_waiting();
  auto ended = std::make_shared<runtime::Event>();
  for (const std::string& id : after) {
    while (true) {
      TaskRecord* found = FindRecord(id);
      if (found == nullptr) {
        co_return Error(absl::StatusCode::kFailedPrecondition, "DEPENDENCY_FORGOTTEN",
                        absl::StrCat("dependency ", id,
                                     " ended and was forgotten before its outcome was seen "
                                     "(raise --retain_finished_tasks)"),
                        {{"task", id}});
      }
      TaskRecord& dependency = *found;
      const v1::Task::State state = dependency.task.state();
      if (state == v1::Task::SUCCEEDED) break;
      if (IsTerminal(state)) {
        dependency.outcome_read = true;  // its failure is passed on in this one's
        co_return Error(absl::StatusCode::kFailedPrecondition, "DEPENDENCY_FAILED",
                        absl::StrCat("dependency ", id, " ended ", v1::Task::State_Name(state),
                                     ": ", dependency.task.error().message()),
                        {{"task", id}, {"state", v1::Task::State_Name(state)}});
      }
      waiting.clear_tasks();
      for (const std::string& other : after) {
        const TaskRecord* o = FindRecord(other);
        if (o != nullptr && !IsTerminal(o->task.state())) waiting.add_tasks(other);
      }
      ended->Clear();
      AddEndWaiter(dependency, ended);
      COTASK_CO_RETURN_IF_ERROR(co_await ended->Wait());
    }
  }
  waiting.clear_tasks();
  co_return absl::OkStatus();
}

runtime::Task<void> Engine::AwaitEvents(TaskRecord* record) {
  v1::Waiting& waiting = *record->task.mutable_waiting();
  while (true) {
    std::vector<EventRecord*> unset;
    waiting.clear_events();
    for (const std::string& name : record->task.options().wait_events()) {
      EventRecord& event = *events_.at(name);
      if (event.signal.is_set()) continue;
      unset.push_back(&event);
      waiting.add_events(name);
    }
    if (unset.empty()) co_return absl::OkStatus();
    for (EventRecord* event : unset) ++event->waiting;
    absl::Status waited = co_await unset.front()->signal.Wait();
    for (EventRecord* event : unset) --event->waiting;
    if (!waited.ok()) {
      waiting.clear_events();
      co_return waited;
    }
  }
}

void Engine::EndAttempt(TaskRecord& record, v1::Task::State outcome, const absl::Status& error,
                        absl::Time retry_time) {
  v1::Task& task = record.task;
  v1::Event event;  // (its task and group are stamped as it is read: StampEvents)
  *event.mutable_time() = NowProto();
  v1::AttemptEnded& ended = *event.mutable_attempt_ended();
  ended.set_attempt(task.attempt());
  ended.set_state(outcome);
  *ended.mutable_error() = ToRpcStatus(error);
  if (task.spec().has_exec() && task.has_result()) *ended.mutable_result() = task.result();
  *ended.mutable_retry_time() = ToProto(retry_time);
  *task.mutable_waiting()->mutable_until() = ended.retry_time();
  AppendToLog(TaskLog(record), std::move(event));
  // The next attempt starts afresh.
  task.set_attempt(task.attempt() + 1);
  record.clear_result();
  if (record.has_rare()) {
    record.rare().output_tail.clear();
    record.rare().output_truncated = false;
  }
  Transition(record, v1::Task::PENDING);
}

runtime::Task<Engine::Outcome> Engine::Execute(TaskRecord* task) {
  if (task->task.spec().has_exec()) return RunExec(task);
  if (task->dispatch != nullptr) return RunDispatch(task);
  return RunSleep(task);
}

absl::Duration Engine::SleepDuration(const TaskRecord& task) {
  const v1::SleepTask& sleep = task.task.spec().sleep();
  return absl::Seconds(sleep.duration().seconds()) + absl::Nanoseconds(sleep.duration().nanos());
}

Engine::Outcome Engine::SleepOutcome(TaskRecord& task) {
  const v1::SleepTask& sleep = task.task.spec().sleep();
  if (sleep.has_error()) return Outcome{FromRpcStatus(sleep.error())};
  if (sleep.result().empty()) {
    task.empty_result = true;
  } else {
    task.task.mutable_result()->set_output(sleep.result());
  }
  return Outcome{absl::OkStatus()};
}

runtime::Task<Engine::Outcome> Engine::RunSleep(TaskRecord* task) {
  COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(ToChrono(SleepDuration(*task))));
  co_return SleepOutcome(*task);
}

void Engine::AppendOutput(TaskRecord& task, v1::Output::Stream stream, absl::string_view bytes) {
  v1::Event event;  // (its task is stamped as it is read: StampEvents)
  *event.mutable_time() = NowProto();
  event.mutable_output()->set_stream(stream);
  event.mutable_output()->set_data(std::string(bytes));
  AppendToLog(TaskLog(task), std::move(event));
  if (!task.task.spec().has_exec()) return;
  // An exec task's result keeps the tail: trimmed in amortized O(1) by letting it grow to twice.
  const size_t keep = options_.exec_output_tail_bytes;
  TaskRecord::Rare& rare = task.rare();
  rare.output_tail.append(bytes.data(), bytes.size());
  if (rare.output_tail.size() > 2 * keep) {
    rare.output_tail.erase(0, rare.output_tail.size() - keep);
    rare.output_truncated = true;
  }
}

runtime::Task<Engine::Outcome> Engine::RunExec(TaskRecord* task) {
  const v1::ExecTask& exec = task->task.spec().exec();
  process::ProcessSpec spec;
  spec.argv.assign(exec.argv().begin(), exec.argv().end());
  spec.env.push_back(absl::StrCat("PATH=", options_.exec_path));
  std::vector<std::string> env;
  for (const auto& [name, value] : exec.env()) env.push_back(absl::StrCat(name, "=", value));
  std::sort(env.begin(), env.end());  // map order is unspecified; the child sees a stable one
  spec.env.insert(spec.env.end(), env.begin(), env.end());
  spec.cwd = exec.cwd();
  spec.stdin_bytes = exec.stdin();
  spec.limits.open_files = 1024;
  spec.run_as = options_.exec_run_as;
  spec.kill_grace = options_.exec_kill_grace;
  if (exec.has_kill_grace()) {
    spec.kill_grace = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::seconds(exec.kill_grace().seconds()) +
        std::chrono::nanoseconds(exec.kill_grace().nanos()));
  }
  absl::StatusOr<process::ExitStatus> exit = co_await processes_.Run(
      std::move(spec), [this, task](process::OutputStream stream, absl::string_view bytes) {
        AppendOutput(
            *task,
            stream == process::OutputStream::kStdout ? v1::Output::STDOUT : v1::Output::STDERR,
            bytes);
      });
  v1::TaskResult& result = *task->task.mutable_result();
  if (task->has_rare()) {  // it wrote something
    TaskRecord::Rare& rare = task->rare();
    const size_t keep = options_.exec_output_tail_bytes;
    if (rare.output_tail.size() > keep) {
      rare.output_tail.erase(0, rare.output_tail.size() - keep);
      rare.output_truncated = true;
    }
    result.set_output(rare.output_tail);
    result.set_output_truncated(rare.output_truncated);
  }
  // (A cancelled Run may have started the process or not; only a spawn error says it could not.)
  if (options_.observer != nullptr && (exit.ok() || !absl::IsCancelled(exit.status()))) {
    options_.observer->OnSpawn(exit.ok());
  }
  if (!exit.ok()) {
    if (absl::IsCancelled(exit.status())) co_return exit.status();
    co_return Outcome{exit.status()};  // it could not be started
  }
  result.set_exit_code(exit->exit_code);
  result.set_signal(exit->signal);
  if (exit->success()) co_return Outcome{absl::OkStatus()};
  if (exit->signaled) {
    co_return Outcome{Error(absl::StatusCode::kUnknown, "PROCESS_KILLED",
                            absl::StrCat(exec.argv(0), " was killed by signal ", exit->signal),
                            {{"signal", absl::StrCat(exit->signal)}})};
  }
  co_return Outcome{Error(absl::StatusCode::kUnknown, "PROCESS_FAILED",
                          absl::StrCat(exec.argv(0), " exited with code ", exit->exit_code),
                          {{"exit_code", absl::StrCat(exit->exit_code)}})};
}

void Engine::Transition(TaskRecord& record, v1::Task::State to, const absl::Status& error) {
  Transition(record, to, error, NowNanos());
}

void Engine::Transition(TaskRecord& record, v1::Task::State to, const absl::Status& error,
                        int64_t now) {
  v1::Task& task = record.task;
  COTASK_CHECK(!IsTerminal(task.state()), "a terminal task state changed");
  const v1::Task::State from = task.state();
  if (from == v1::Task::RUNNING && record.has_rare()) record.rare().slow_timer.Cancel();
  task.set_state(to);
  if (to != v1::Task::PENDING) task.clear_waiting();
  if (to == v1::Task::RUNNING) {
    record.times.start = now;
    if (record.runner != nullptr) WatchSlowTask(record);
  }
  const bool terminal = IsTerminal(to);
  if (terminal) {
    record.times.end = now;
    if (!error.ok()) *task.mutable_error() = ToRpcStatus(error);
    if (to != v1::Task::SUCCEEDED && !task.spec().has_exec()) record.clear_result();
  }
  if (record.dispatch != nullptr) QueueStateChanged(record, from, to);
  if (options_.observer != nullptr)
    options_.observer->OnTaskState({task, record.key, record.times, GroupOf(record), from, to});

  // The standard events of a first attempt wait in deferred_events while nothing else is in
  // the log (TaskLog makes them when it is used).
  const bool plain_end =
      terminal && !task.has_error() && !(task.has_result() && task.result().ByteSizeLong() > 0);
  if (from == v1::Task::STATE_UNSPECIFIED) {
    record.deferred_events = 1;
  } else if ((record.deferred_events == 1 && to == v1::Task::QUEUED &&
              record.dispatch == nullptr) ||
             (record.deferred_events == 2 && to == v1::Task::RUNNING) ||
             (record.deferred_events == 3 && plain_end)) {
    ++record.deferred_events;
  } else if (terminal && !plain_end) {
    v1::Event event;  // (its task and group are stamped as it is read: StampEvents)
    *event.mutable_time() = TimestampOf(now);
    v1::TaskStateChange& change = *event.mutable_task_state();
    change.set_state(to);
    change.set_attempt(task.attempt());
    if (task.has_result()) {
      *change.mutable_result() = task.result();
    } else if (record.empty_result) {
      change.mutable_result();
    }
    if (task.has_error()) *change.mutable_error() = task.error();
    AppendToLog(TaskLog(record), std::move(event), terminal);
  } else {
    AppendStateToLog(TaskLog(record), 0, TimestampOf(now), to, task.attempt(),
                     terminal && record.has_result(), terminal);
  }
  if (record.group != nullptr && ((to == v1::Task::PENDING && task.attempt() == 1) || terminal)) {
    // The group's log tells of its children's arrivals and endings (not their results or
    // output, which stay in the children's own logs, nor their retries).
    // (Its group is stamped as it is read.)
    if (terminal && task.has_error()) {
      v1::Event summary;
      summary.set_task(IdOf(record));
      *summary.mutable_time() = TimestampOf(now);
      v1::TaskStateChange& told = *summary.mutable_task_state();
      told.set_state(to);
      told.set_attempt(task.attempt());
      *told.mutable_error() = task.error();
      AppendToLog(record.group->log, std::move(summary));
    } else {
      AppendStateToLog(record.group->log, record.key, TimestampOf(now), to, task.attempt());
    }
  }
  if (!terminal) return;

  record.life = runtime::TaskRef();
  if (record.has_rare()) {
    for (const std::weak_ptr<runtime::Event>& waiter : record.rare().end_waiters) {
      if (std::shared_ptr<runtime::Event> event = waiter.lock()) event->Set();
    }
    record.rare().end_waiters.clear();
  }
  --pending_tasks_;
  finished_tasks_.push_back(record.key);
  if (GroupRecord* group = record.group) {
    group->active_tasks.erase(&record);
    if (to == v1::Task::FAILED || to == v1::Task::TIMED_OUT) {
      v1::ChildFailure failure;
      failure.set_task(IdOf(record));
      failure.set_state(to);
      *failure.mutable_error() = task.error();
      ChildEnded(*group, &failure);
    } else {
      ChildEnded(*group, nullptr);
    }
  }
  if (record.runner != nullptr) RunnerTaskEnded(record);
  SignalIfIdle();
}

bool Engine::CancelTaskRecord(TaskRecord& record, const std::string& message) {
  if (IsTerminal(record.task.state())) return false;
  if (record.task.cancel_message().empty()) record.task.set_cancel_message(message);
  if (!record.started) {
    // Cancelled before its coroutine began (or, delayed, before it had one): it never runs
    // (asyncio), and it ends here.
    delayed_.erase({ToTime(record.task.start_after()), &record});
    if (record.life) record.life.Cancel(message);
    Transition(record, v1::Task::CANCELLED, CancelledError(record.task));
    return true;
  }
  record.life.Cancel(message);
  return true;
}

}  // namespace cotask::engine
