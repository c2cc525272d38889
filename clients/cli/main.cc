// cotask: the command line of cotask. `cotask --help` lists the commands; every command has
// --help with examples. Exit codes: 0 done; 1 an error (printed as one line with its status
// code) or a task that failed; 2 a usage error; `run` mirrors the task (see RunExitCode).
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cli/output.h"
#include "clients/cpp/client.h"
#include "clients/cpp/runner.h"
#include "google/protobuf/util/time_util.h"

namespace cotask::cli {
namespace {

using google::protobuf::util::TimeUtil;

struct Globals {
  std::string server;
  std::string timeout = "30s";
  std::string output = "table";
};

Format FormatOf(const std::string& name) {
  if (name == "wide") return Format::kWide;
  if (name == "json") return Format::kJson;
  if (name == "yaml") return Format::kYaml;
  return Format::kTable;
}

// Flag values checked while parsing, so that a bad one is a usage error (exit 2).
const CLI::Validator kDuration(
    [](std::string& text) -> std::string {
      absl::Duration d;
      if (absl::ParseDuration(text, &d) && d >= absl::ZeroDuration()) return "";
      return "\"" + text + "\" is not a duration (examples: 500ms, 1.5s, 2m, 1h30m)";
    },
    "DURATION");
const CLI::Validator kKeyValue(
    [](std::string& text) -> std::string {
      return text.find('=') == std::string::npos || text[0] == '='
                 ? "\"" + text + "\" is not KEY=VALUE"
                 : "";
    },
    "KEY=VALUE");
const CLI::Validator kPermit(
    [](std::string& text) -> std::string {
      const size_t eq = text.find('=');
      int64_t count = 0;
      if (eq == std::string::npos || (absl::SimpleAtoi(text.substr(eq + 1), &count) && count > 0)) {
        return "";
      }
      return "\"" + text + "\" is not SEMAPHORE[=N], N >= 1";
    },
    "SEMAPHORE[=N]");

// (Checked by kDuration.)
absl::Duration DurationOf(const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) return absl::ZeroDuration();
  return d;
}

google::protobuf::Duration ToProto(absl::Duration d) {
  return TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

// key=value pairs of a repeated flag (checked by kKeyValue).
std::map<std::string, std::string> Pairs(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

// A usage error found once the flags are parsed: exit 2.
int Usage(const absl::Status& status) {
  std::fprintf(stderr, "cotask: %s\n", std::string(status.message()).c_str());
  return 2;
}

// The error line: "cotask: NOT_FOUND: no task t...".
int Fail(const absl::Status& status) {
  std::fprintf(stderr, "cotask: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

// ---------------------------------------------------------------------------------------------
// Task flags, shared by run and submit.

struct TaskFlags {
  std::vector<std::string> command;
  std::string sleep;
  std::string result;
  std::string fail;
  std::vector<std::string> env;
  std::string cwd;
  std::string stdin_file;
  std::string group;
  std::vector<std::string> labels;
  std::string task_timeout;
  std::string delay;
  std::vector<std::string> after;
  std::vector<std::string> acquire;
  std::vector<std::string> wait_events;
  int retries = 0;
  std::string backoff = "1s";
  bool shield = false;
  bool detach = false;
  std::string request_id;
  std::string queue;
  std::string payload;
  std::string payload_file;
  std::string content_type;
  int priority = 0;
  std::string wait_for_room;
};

void AddTaskFlags(CLI::App* command, TaskFlags& f) {
  command->add_option("command", f.command,
                      "the program and its arguments, after --; the program is an absolute path "
                      "on the server's --exec_allow list");
  command->add_option("--sleep", f.sleep, "a timer task instead: sleep this long (e.g. 2s)")
      ->check(kDuration);
  command->add_option("--result", f.result, "with --sleep: the output it succeeds with");
  command->add_option("--fail", f.fail, "with --sleep: fail with this message instead");
  command->add_option("-e,--env", f.env, "KEY=VALUE for the program's environment (repeat)")
      ->allow_extra_args(false)
      ->check(kKeyValue);
  command->add_option("--cwd", f.cwd, "the program's working directory (absolute)");
  command->add_option("--stdin-file", f.stdin_file, "a file whose bytes go to the program's stdin");
  command->add_option("-g,--group", f.group, "an open group to add the task to");
  command->add_option("-l,--label", f.labels, "KEY=VALUE label (repeat)")
      ->allow_extra_args(false)
      ->check(kKeyValue);
  command
      ->add_option("--task-timeout", f.task_timeout,
                   "the task's own timeout (per attempt): past it, TIMED_OUT")
      ->check(kDuration);
  command->add_option("--delay", f.delay, "start the task this long from now")->check(kDuration);
  command->add_option("--after", f.after, "a task id that must succeed first (repeat)")
      ->allow_extra_args(false);
  command
      ->add_option("--acquire", f.acquire, "SEMAPHORE[=N]: permits to hold while running (repeat)")
      ->allow_extra_args(false)
      ->check(kPermit);
  command->add_option("--wait-event", f.wait_events, "an event that must be set first (repeat)")
      ->allow_extra_args(false);
  command->add_option("--retries", f.retries, "retry a failed or timed-out task this many times")
      ->check(CLI::Range(0, 99));
  command->add_option("--backoff", f.backoff, "the first retry's delay (doubling, at most 1h)")
      ->check(kDuration);
  command->add_flag("--shield", f.shield, "cancelling its group leaves the task running");
  command->add_flag("--detach", f.detach, "the task is not cancelled when this command is");
  command->add_option("--request-id", f.request_id,
                      "an idempotency key (default: a fresh one); the same key, the same task");
  command->add_option("-q,--queue", f.queue,
                      "a dispatch task instead: put it on this queue, for a remote worker");
  command->add_option("--payload", f.payload, "with --queue: the bytes the worker gets");
  command->add_option("--payload-file", f.payload_file, "with --queue: a file of the payload");
  command->add_option("--content-type", f.content_type,
                      "with --queue: what the payload is (e.g. application/json)");
  command
      ->add_option("--priority", f.priority,
                   "with --queue: on a priority queue, higher first (-1000 to 1000)")
      ->check(CLI::Range(-1000, 1000));
  command
      ->add_option("--wait-for-room", f.wait_for_room,
                   "with --queue: if the queue is full, wait up to this long (at most 1m)")
      ->check(kDuration);
}

absl::StatusOr<v1::CreateTaskRequest> BuildTask(const TaskFlags& f) {
  v1::CreateTaskRequest request;
  if (static_cast<int>(!f.command.empty()) + static_cast<int>(!f.sleep.empty()) +
          static_cast<int>(!f.queue.empty()) >
      1) {
    return absl::InvalidArgumentError(
        "give one of a command (after --), --sleep, or --queue, not several");
  }
  if (f.queue.empty() && (!f.payload.empty() || !f.payload_file.empty() ||
                          !f.content_type.empty() || f.priority != 0 || !f.wait_for_room.empty())) {
    return absl::InvalidArgumentError(
        "--payload, --payload-file, --content-type, --priority and --wait-for-room go with "
        "--queue");
  }
  if (!f.queue.empty()) {
    v1::DispatchTask& dispatch = *request.mutable_spec()->mutable_dispatch();
    dispatch.set_queue(f.queue);
    dispatch.set_content_type(f.content_type);
    if (!f.payload.empty() && !f.payload_file.empty()) {
      return absl::InvalidArgumentError("give --payload or --payload-file, not both");
    }
    dispatch.set_payload(f.payload);
    if (!f.payload_file.empty()) {
      std::ifstream in(f.payload_file, std::ios::binary);
      if (!in) {
        return absl::InvalidArgumentError(
            absl::StrCat("--payload-file: cannot read ", f.payload_file));
      }
      std::stringstream bytes;
      bytes << in.rdbuf();
      dispatch.set_payload(bytes.str());
    }
    request.mutable_options()->set_priority(f.priority);
    if (!f.wait_for_room.empty())
      *request.mutable_wait_for_room() = ToProto(DurationOf(f.wait_for_room));
  } else if (!f.command.empty()) {
    v1::ExecTask& exec = *request.mutable_spec()->mutable_exec();
    for (const std::string& arg : f.command) exec.add_argv(arg);
    for (const auto& [key, value] : Pairs(f.env)) (*exec.mutable_env())[key] = value;
    exec.set_cwd(f.cwd);
    if (!f.stdin_file.empty()) {
      std::ifstream in(f.stdin_file, std::ios::binary);
      if (!in)
        return absl::InvalidArgumentError(absl::StrCat("--stdin-file: cannot read ", f.stdin_file));
      std::stringstream bytes;
      bytes << in.rdbuf();
      exec.set_stdin(bytes.str());
    }
  } else if (!f.sleep.empty()) {
    v1::SleepTask& sleep = *request.mutable_spec()->mutable_sleep();
    *sleep.mutable_duration() = ToProto(DurationOf(f.sleep));
    sleep.set_result(f.result);
    if (!f.fail.empty()) {
      sleep.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kUnknown));
      sleep.mutable_error()->set_message(f.fail);
    }
  } else {
    return absl::InvalidArgumentError(
        "what to run: a command after -- (cotask run -- /bin/echo hi), --sleep, or --queue");
  }
  request.set_group(f.group);
  for (const auto& [key, value] : Pairs(f.labels)) (*request.mutable_labels())[key] = value;
  v1::TaskOptions& options = *request.mutable_options();
  if (!f.task_timeout.empty()) {
    *options.mutable_timeout() = ToProto(DurationOf(f.task_timeout));
  }
  if (!f.delay.empty()) *options.mutable_delay() = ToProto(DurationOf(f.delay));
  for (const std::string& id : f.after) options.add_after(id);
  for (const std::string& item : f.acquire) {
    v1::Permit& permit = *options.add_acquire();
    const std::vector<std::string> parts = absl::StrSplit(item, absl::MaxSplits('=', 1));
    permit.set_semaphore(parts[0]);
    int64_t count = 0;
    if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &count)) permit.set_count(count);
  }
  for (const std::string& name : f.wait_events) options.add_wait_events(name);
  if (f.retries > 0) {
    options.mutable_retry()->set_max_attempts(f.retries + 1);
    *options.mutable_retry()->mutable_initial_backoff() = ToProto(DurationOf(f.backoff));
  }
  options.set_shield(f.shield);
  request.set_detached(f.detach);
  request.set_request_id(f.request_id);
  return request;
}

// ---------------------------------------------------------------------------------------------
// run: the exit code mirrors the task.

// exec: its exit code, or 128 + the signal that killed it; TIMED_OUT 124 (as timeout(1));
// cancelled by Ctrl-C 130; any other failure 1.
int RunExitCode(const v1::Task& task, bool interrupted) {
  switch (task.state()) {
    case v1::Task::SUCCEEDED:
      return 0;
    case v1::Task::TIMED_OUT:
      return 124;
    case v1::Task::CANCELLED:
      return interrupted ? 130 : 1;
    default:
      break;
  }
  if (task.spec().has_exec() && task.has_result()) {
    if (task.result().signal() != 0) return 128 + task.result().signal();
    if (task.result().exit_code() != 0) return task.result().exit_code();
  }
  return 1;
}

// SIGINT and SIGTERM, handled by a thread of their own (blocked everywhere else, gRPC's threads
// included: this is made before them). While `run` waits for a task it owns, the first signal
// cancels the task (the run then ends with its CANCELLED state, exit 130) and a second exits at
// once; at any other time, a signal exits at once with 130.
class Interrupts {
 public:
  Interrupts() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::thread([this, signals] {
      int received = 0;
      while (sigwait(&signals, &received) == 0) {
        if (interrupted_.exchange(true)) std::_Exit(130);
        // Under the lock: Forget() waits for a cancel in flight, so the client outlives it.
        std::lock_guard lock(mutex_);
        if (client_ == nullptr) std::_Exit(130);
        std::fprintf(stderr, "cotask: interrupted: cancelling %s (again to quit at once)\n",
                     task_id_.c_str());
        client_->CancelTask(task_id_, "cotask run was interrupted").IgnoreError();
      }
    }).detach();
  }
  // From now on a signal cancels this task, until Forget().
  void CancelOnInterrupt(Client& client, const std::string& id) {
    std::lock_guard lock(mutex_);
    client_ = &client;
    task_id_ = id;
  }
  // Signals exit at once again; returns once no cancel is in flight (the client may go).
  void Forget() {
    std::lock_guard lock(mutex_);
    client_ = nullptr;
  }
  bool interrupted() const { return interrupted_; }

 private:
  std::mutex mutex_;
  Client* client_ = nullptr;
  std::string task_id_;
  std::atomic<bool> interrupted_{false};
};

int Run(Client& client, const TaskFlags& flags, Format format, Interrupts& interrupts) {
  absl::StatusOr<v1::CreateTaskRequest> request = BuildTask(flags);
  if (!request.ok()) return Usage(request.status());
  // The task belongs to a runner of this command (unless --detach): if the command dies, the
  // server sees the runner's stream end and cancels the task.
  std::unique_ptr<Runner> runner;
  if (!flags.detach) {
    absl::StatusOr<std::unique_ptr<Runner>> opened = Runner::Open(client);
    if (!opened.ok()) return Fail(opened.status());
    runner = *std::move(opened);
  }
  absl::StatusOr<v1::Task> created = runner != nullptr ? runner->CreateTask(*std::move(request))
                                                       : client.CreateTask(*std::move(request));
  if (!created.ok()) return Fail(created.status());
  struct ForgetOnReturn {
    Interrupts* interrupts;
    ~ForgetOnReturn() { interrupts->Forget(); }
  } forget{&interrupts};
  if (runner != nullptr) interrupts.CancelOnInterrupt(client, created->id());
  v1::WatchRequest watch;
  watch.set_task(created->id());
  const bool stream_output = format == Format::kTable || format == Format::kWide;
  absl::Status watched = client.Watch(
      watch,
      [&](const v1::Event& event) {
        if (stream_output && event.has_output()) {
          std::FILE* to = event.output().stream() == v1::Output::STDERR ? stderr : stdout;
          std::fwrite(event.output().data().data(), 1, event.output().data().size(), to);
          std::fflush(to);
        }
        return true;
      },
      CallOptions{absl::Hours(24 * 365)});
  if (!watched.ok()) return Fail(watched);
  absl::StatusOr<v1::Task> task = client.GetTask(created->id());
  if (!task.ok()) return Fail(task.status());
  if (!stream_output) {
    Print(*task, format, "");
  } else if (task->state() != v1::Task::SUCCEEDED) {
    std::fprintf(stderr, "cotask: task %s %s: %s\n", task->id().c_str(),
                 v1::Task::State_Name(task->state()).c_str(), task->error().message().c_str());
  } else if (!task->spec().has_exec() && !task->result().output().empty()) {
    // A timer's or a worker's result (an exec task's output was streamed).
    const std::string& output = task->result().output();
    std::fwrite(output.data(), 1, output.size(), stdout);
    if (output.back() != '\n') std::fputc('\n', stdout);
  }
  return RunExitCode(*task, interrupts.interrupted());
}

// ---------------------------------------------------------------------------------------------
// The other commands.

void PrintTask(const v1::Task& task, Format format) {
  Print(task, format, TasksTable({&task}, format == Format::kWide, absl::Now()));
}

void PrintGroup(const v1::Group& group, Format format) {
  Print(group, format, GroupsTable({&group}, format == Format::kWide, absl::Now()));
}

// The --state values: the state names, in any case.
std::vector<std::string> StateNames(const google::protobuf::EnumDescriptor* states) {
  std::vector<std::string> names;
  for (int i = 1; i < states->value_count(); ++i) names.push_back(states->value(i)->name());
  return names;
}

template <class Enum>
Enum StateOf(const google::protobuf::EnumDescriptor* states, const std::string& name) {
  std::string upper = name;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const google::protobuf::EnumValueDescriptor* value = states->FindValueByName(upper);
  return static_cast<Enum>(value == nullptr ? 0 : value->number());
}

// Watches a log and prints each event (JSON Lines for -o json).
int WatchLog(Client& client, v1::WatchRequest request, Format format) {
  absl::Status watched = client.Watch(
      std::move(request),
      [&](const v1::Event& event) {
        std::string line = format == Format::kJson   ? ToJson(event, false) + "\n"
                           : format == Format::kYaml ? "---\n" + ToYaml(event)
                                                     : EventLine(event) + "\n";
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fflush(stdout);
        return true;
      },
      CallOptions{absl::Hours(24 * 365)});
  return watched.ok() ? 0 : Fail(watched);
}

constexpr char kExamples[] = R"(
Examples:
  cotask run -- /bin/echo hello            run a program, follow its output, exit with its code
  cotask run --sleep 2s --result done      a timer task
  cotask submit -g nightly -- /usr/bin/make   add a task to a group, print its id
  cotask list --state running -o wide      list tasks
  cotask logs -f t0618a3c2b1f00            follow a task's output
  cotask group create nightly && cotask group wait nightly

The server: --server or $COTASK_SERVER (default 127.0.0.1:50051).)";

}  // namespace

int Main(int argc, char** argv) {
  Interrupts interrupts;  // first: no thread may take the signals before it blocks them
  CLI::App app{"cotask: run and follow tasks on a cotaskd server", "cotask"};
  app.footer(kExamples);
  app.require_subcommand(1);
  app.fallthrough();
  Globals g;
  app.add_option("-s,--server", g.server, "host:port of cotaskd")->envname("COTASK_SERVER");
  app.add_option("--timeout", g.timeout, "the deadline of each call that does not wait")
      ->check(kDuration);
  app.add_option("-o,--output", g.output, "table, wide, json (the API's JSON) or yaml")
      ->check(CLI::IsMember({"table", "wide", "json", "yaml"}));

  std::function<int(Client&, Format)> action;

  TaskFlags run_flags;
  CLI::App* run = app.add_subcommand("run", "create a task, stream its output, exit with its code");
  AddTaskFlags(run, run_flags);
  run->footer(R"(
Exit code: the program's, or 128+signal if a signal killed it; 124 if it timed out; 130 after
Ctrl-C (which cancels the task); 1 for any other failure.

Examples:
  cotask run -- /bin/sh -c 'echo hi; exit 3'; echo $?      prints hi, then 3
  cotask run --task-timeout 10s --retries 2 -- /usr/bin/curl -fsS https://example.com
  cotask run --sleep 1s --fail "broken on purpose")");
  run->callback(
      [&] { action = [&](Client& c, Format f) { return Run(c, run_flags, f, interrupts); }; });

  TaskFlags submit_flags;
  CLI::App* submit = app.add_subcommand("submit", "create a task and print its id");
  AddTaskFlags(submit, submit_flags);
  submit->footer(
      "\nExamples:\n  id=$(cotask submit -- /bin/sleep 5)\n  cotask submit --sleep 1m --delay 10m");
  submit->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::CreateTaskRequest> request = BuildTask(submit_flags);
      if (!request.ok()) return Usage(request.status());
      absl::StatusOr<v1::Task> task = c.CreateTask(*std::move(request));
      if (!task.ok()) return Fail(task.status());
      Print(*task, f, task->id() + "\n");
      return 0;
    };
  });

  std::string id;
  CLI::App* get = app.add_subcommand("get", "show a task");
  get->add_option("id", id, "the task's id")->required();
  get->footer("\nExamples:\n  cotask get t0618a3c2b1f00 -o yaml");
  get->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::Task> task = c.GetTask(id);
      if (!task.ok()) return Fail(task.status());
      PrintTask(*task, f);
      return 0;
    };
  });

  std::string group_filter, state_filter, page_token, queue_filter;
  std::vector<std::string> label_filter;
  int limit = 0;
  bool all_pages = false;
  CLI::App* list = app.add_subcommand("list", "list tasks, oldest first");
  list->add_option("-g,--group", group_filter, "only this group's tasks");
  list->add_option("-q,--queue", queue_filter, "only this queue's dispatch tasks");
  list->add_option("--state", state_filter, "only tasks in this state (e.g. running)")
      ->check(CLI::IsMember(StateNames(v1::Task::State_descriptor()), CLI::ignore_case));
  list->add_option("-l,--label", label_filter, "KEY=VALUE that must match (repeat)")
      ->allow_extra_args(false)
      ->check(kKeyValue);
  list->add_option("--limit", limit, "tasks per page (default 100, at most 1000)")
      ->check(CLI::Range(0, 1000));
  list->add_option("--page-token", page_token, "continue a listing (printed after a page)");
  list->add_flag("--all", all_pages, "every page");
  list->footer(
      "\nExamples:\n  cotask list --state failed -l team=infra\n  cotask list -g nightly --all -o "
      "json");
  list->callback([&] {
    action = [&](Client& c, Format f) {
      v1::ListTasksRequest request;
      request.set_group(group_filter);
      request.set_queue(queue_filter);
      request.set_state(StateOf<v1::Task::State>(v1::Task::State_descriptor(), state_filter));
      for (const auto& [key, value] : Pairs(label_filter)) (*request.mutable_labels())[key] = value;
      request.set_page_size(limit);
      request.set_page_token(page_token);
      v1::ListTasksResponse all;
      while (true) {
        absl::StatusOr<v1::ListTasksResponse> page = c.ListTasks(request);
        if (!page.ok()) return Fail(page.status());
        all.mutable_tasks()->MergeFrom(page->tasks());
        all.set_next_page_token(page->next_page_token());
        if (!all_pages || page->next_page_token().empty()) break;
        request.set_page_token(page->next_page_token());
      }
      std::vector<const v1::Task*> rows;
      for (const v1::Task& task : all.tasks()) rows.push_back(&task);
      Print(all, f, TasksTable(rows, f == Format::kWide, absl::Now()));
      if ((f == Format::kTable || f == Format::kWide) && !all.next_page_token().empty()) {
        std::fprintf(stderr, "more: cotask list ... --page-token %s\n",
                     all.next_page_token().c_str());
      }
      return 0;
    };
  });

  CLI::App* watch = app.add_subcommand("watch", "print a task's events as they happen");
  int64_t from = 0;
  watch->add_option("id", id, "the task's id")->required();
  watch->add_option("--from", from, "the first sequence number (after a previous watch)");
  watch->footer("\nExamples:\n  cotask watch t0618a3c2b1f00 -o json | jq .taskState.state");
  watch->callback([&] {
    action = [&](Client& c, Format f) {
      v1::WatchRequest request;
      request.set_task(id);
      request.set_from_sequence(from);
      return WatchLog(c, request, f);
    };
  });

  bool follow = false;
  CLI::App* logs = app.add_subcommand("logs", "print a task's output (stdout and stderr)");
  logs->add_option("id", id, "the task's id")->required();
  logs->add_flag("-f,--follow", follow, "go on printing until the task ends");
  logs->footer("\nExamples:\n  cotask logs t0618a3c2b1f00\n  cotask logs -f t0618a3c2b1f00");
  logs->callback([&] {
    action = [&](Client& c, Format) {
      v1::WatchRequest request;
      request.set_task(id);
      request.set_no_follow(!follow);
      absl::Status watched = c.Watch(
          request,
          [](const v1::Event& event) {
            if (event.has_output()) {
              std::FILE* to = event.output().stream() == v1::Output::STDERR ? stderr : stdout;
              std::fwrite(event.output().data().data(), 1, event.output().data().size(), to);
              std::fflush(to);
            }
            return true;
          },
          CallOptions{absl::Hours(24 * 365)});
      return watched.ok() ? 0 : Fail(watched);
    };
  });

  std::string message;
  CLI::App* cancel = app.add_subcommand("cancel", "cancel a task");
  cancel->add_option("id", id, "the task's id")->required();
  cancel->add_option("-m,--message", message, "why (kept in the task)");
  cancel->footer("\nExamples:\n  cotask cancel t0618a3c2b1f00 -m 'wrong input'");
  cancel->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::CancelTaskResponse> response = c.CancelTask(id, message);
      if (!response.ok()) return Fail(response.status());
      Print(*response, f,
            response->cancelled()
                ? absl::StrCat("cancelling ", id, "\n")
                : absl::StrCat(id, " had already ended (",
                               v1::Task::State_Name(response->task().state()), ")\n"));
      return 0;
    };
  });

  std::vector<std::string> ids;
  bool first = false, first_exception = false;
  std::string wait_timeout;
  CLI::App* wait = app.add_subcommand("wait", "wait for tasks to end (asyncio.wait)");
  wait->add_option("ids", ids, "task ids")->required();
  wait->add_flag("--first", first, "until the first has ended");
  wait->add_flag("--first-exception", first_exception, "until one fails (or all have ended)");
  wait->add_option("--wait-timeout", wait_timeout, "stop waiting after this long")
      ->check(kDuration);
  wait->footer(
      "\nExit code: 0 if every task that ended succeeded, 1 otherwise.\n\nExamples:\n  cotask wait "
      "$a $b --first-exception");
  wait->callback([&] {
    action = [&](Client& c, Format f) {
      v1::WaitTasksRequest request;
      for (const std::string& one : ids) request.add_ids(one);
      request.set_return_when(first             ? v1::WaitTasksRequest::FIRST_COMPLETED
                              : first_exception ? v1::WaitTasksRequest::FIRST_EXCEPTION
                                                : v1::WaitTasksRequest::ALL_COMPLETED);
      if (!wait_timeout.empty()) {
        *request.mutable_timeout() = ToProto(DurationOf(wait_timeout));
      }
      absl::StatusOr<v1::WaitTasksResponse> response =
          c.WaitTasks(request, CallOptions{absl::Hours(24 * 365)});
      if (!response.ok()) return Fail(response.status());
      std::vector<const v1::Task*> rows;
      bool failed = false;
      for (const v1::Task& task : response->done()) {
        rows.push_back(&task);
        failed = failed || task.state() != v1::Task::SUCCEEDED;
      }
      for (const v1::Task& task : response->pending()) rows.push_back(&task);
      Print(*response, f, TasksTable(rows, f == Format::kWide, absl::Now()));
      return failed ? 1 : 0;
    };
  });

  // group ...
  CLI::App* group = app.add_subcommand("group", "task groups (asyncio.TaskGroup)");
  group->footer("\nExamples:\n  cotask group create nightly\n  cotask group wait nightly");
  group->require_subcommand(1);
  std::string name, parent, policy = "fail-fast", group_timeout;
  std::vector<std::string> group_labels;
  CLI::App* group_create = group->add_subcommand("create", "open a group");
  group_create->add_option("name", name, "1 to 128 of [A-Za-z0-9._-]")->required();
  group_create->add_option("--parent", parent, "an open group this one belongs to");
  group_create
      ->add_option("--policy", policy, "fail-fast (the first failure cancels the rest) or all")
      ->check(CLI::IsMember({"fail-fast", "all"}));
  group_create->add_option("--group-timeout", group_timeout, "cancel what is left after this long")
      ->check(kDuration);
  group_create->add_option("-l,--label", group_labels, "KEY=VALUE label (repeat)")
      ->allow_extra_args(false)
      ->check(kKeyValue);
  group_create->footer(
      "\nExamples:\n  cotask group create nightly --policy all --group-timeout 1h");
  group_create->callback([&] {
    action = [&](Client& c, Format f) {
      v1::CreateGroupRequest request;
      request.set_name(name);
      request.set_parent(parent);
      request.set_policy(policy == "all" ? v1::Group::ALL : v1::Group::FAIL_FAST);
      if (!group_timeout.empty()) {
        *request.mutable_timeout() = ToProto(DurationOf(group_timeout));
      }
      for (const auto& [key, value] : Pairs(group_labels)) (*request.mutable_labels())[key] = value;
      absl::StatusOr<v1::Group> created = c.CreateGroup(request);
      if (!created.ok()) return Fail(created.status());
      PrintGroup(*created, f);
      return 0;
    };
  });
  auto group_command = [&](const char* command, const char* help, auto call) {
    CLI::App* sub = group->add_subcommand(command, help);
    sub->add_option("name", name, "the group's name")->required();
    sub->footer(absl::StrCat("\nExamples:\n  cotask group ", command, " nightly\n  cotask group ",
                             command, " nightly -o json"));
    sub->callback([&, call] { action = [&, call](Client& c, Format f) { return call(c, f); }; });
    return sub;
  };
  group_command("get", "show a group", [&](Client& c, Format f) {
    absl::StatusOr<v1::Group> found = c.GetGroup(name);
    if (!found.ok()) return Fail(found.status());
    PrintGroup(*found, f);
    return 0;
  });
  group_command("close", "take no new tasks; the group ends when its tasks have",
                [&](Client& c, Format f) {
                  absl::StatusOr<v1::Group> closed = c.CloseGroup(name);
                  if (!closed.ok()) return Fail(closed.status());
                  PrintGroup(*closed, f);
                  return 0;
                });
  group_command("cancel", "cancel every task of the group", [&](Client& c, Format f) {
    absl::StatusOr<v1::CancelGroupResponse> response = c.CancelGroup(name, message);
    if (!response.ok()) return Fail(response.status());
    PrintGroup(response->group(), f);
    return 0;
  })->add_option("-m,--message", message, "why");
  group_command("watch", "print a group's events as they happen", [&](Client& c, Format f) {
    v1::WatchRequest request;
    request.set_group(name);
    return WatchLog(c, request, f);
  });
  group_command("wait", "close the group and wait for it; exit 1 unless it succeeded",
                [&](Client& c, Format f) {
                  absl::StatusOr<v1::Group> closed = c.CloseGroup(name);
                  if (!closed.ok()) return Fail(closed.status());
                  absl::StatusOr<v1::Group> ended =
                      c.AwaitGroup(*closed, CallOptions{absl::Hours(24 * 365)});
                  if (!ended.ok()) return Fail(ended.status());
                  PrintGroup(*ended, f);
                  return ended->state() == v1::Group::SUCCEEDED ? 0 : 1;
                });
  CLI::App* group_list = group->add_subcommand("list", "list groups by name");
  group_list->add_option("--parent", parent, "only this group's child groups");
  group_list->add_option("--state", state_filter, "only groups in this state")
      ->check(CLI::IsMember(StateNames(v1::Group::State_descriptor()), CLI::ignore_case));
  group_list->add_option("-l,--label", label_filter, "KEY=VALUE that must match (repeat)")
      ->allow_extra_args(false)
      ->check(kKeyValue);
  group_list->footer(
      "\nExamples:\n  cotask group list --state failed\n  cotask group list --parent nightly -o "
      "wide");
  group_list->callback([&] {
    action = [&](Client& c, Format f) {
      v1::ListGroupsRequest request;
      request.set_parent(parent);
      request.set_state(StateOf<v1::Group::State>(v1::Group::State_descriptor(), state_filter));
      for (const auto& [key, value] : Pairs(label_filter)) (*request.mutable_labels())[key] = value;
      v1::ListGroupsResponse all;
      while (true) {
        absl::StatusOr<v1::ListGroupsResponse> page = c.ListGroups(request);
        if (!page.ok()) return Fail(page.status());
        all.mutable_groups()->MergeFrom(page->groups());
        if (page->next_page_token().empty()) break;
        request.set_page_token(page->next_page_token());
      }
      std::vector<const v1::Group*> rows;
      for (const v1::Group& one : all.groups()) rows.push_back(&one);
      Print(all, f, GroupsTable(rows, f == Format::kWide, absl::Now()));
      return 0;
    };
  });

  // event ...
  CLI::App* event = app.add_subcommand("event", "named events (asyncio.Event)");
  event->footer("\nExamples:\n  cotask event set deploy-done");
  event->require_subcommand(1);
  auto event_command = [&](const char* command, const char* help,
                           const std::function<absl::StatusOr<v1::NamedEvent>(Client&)>& call) {
    CLI::App* sub = event->add_subcommand(command, help);
    sub->add_option("name", name, "the event's name")->required();
    sub->footer(absl::StrCat("\nExamples:\n  cotask event ", command, " deploy-done\n",
                             "  cotask submit --wait-event deploy-done -- /usr/bin/smoke-test"));
    sub->callback([&, call] {
      action = [&, call](Client& c, Format f) {
        absl::StatusOr<v1::NamedEvent> result = call(c);
        if (!result.ok()) return Fail(result.status());
        Print(*result, f,
              RenderTable({"NAME", "SET", "WAITING"},
                          {{result->name(), result->is_set() ? "yes" : "no",
                            absl::StrCat(result->waiting_tasks())}},
                          TerminalWidth()));
        return 0;
      };
    });
  };
  event_command("set", "set an event: every task waiting for it starts",
                [&](Client& c) { return c.SetEvent(name); });
  event_command("clear", "clear an event", [&](Client& c) { return c.ClearEvent(name); });
  event_command("get", "show an event", [&](Client& c) { return c.GetEvent(name); });

  // semaphore ...
  CLI::App* semaphore = app.add_subcommand("semaphore", "named semaphores (asyncio.Semaphore)");
  semaphore->footer("\nExamples:\n  cotask semaphore create db 3");
  semaphore->require_subcommand(1);
  int64_t semaphore_limit = 0;
  auto print_semaphore = [](const v1::Semaphore& s, Format f) {
    Print(s, f,
          RenderTable({"NAME", "LIMIT", "IN USE", "WAITING"},
                      {{s.name(), absl::StrCat(s.limit()), absl::StrCat(s.in_use()),
                        absl::StrCat(s.waiting_tasks())}},
                      TerminalWidth()));
  };
  CLI::App* semaphore_create = semaphore->add_subcommand("create", "declare a semaphore");
  semaphore_create->add_option("name", name, "its name")->required();
  semaphore_create->add_option("limit", semaphore_limit, "permits in all")->required();
  semaphore_create->footer(
      "\nExamples:\n  cotask semaphore create db 3\n  cotask submit --acquire db -- "
      "/usr/bin/migrate");
  semaphore_create->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::Semaphore> created = c.CreateSemaphore(name, semaphore_limit);
      if (!created.ok()) return Fail(created.status());
      print_semaphore(*created, f);
      return 0;
    };
  });
  CLI::App* semaphore_get = semaphore->add_subcommand("get", "show a semaphore");
  semaphore_get->add_option("name", name, "its name")->required();
  semaphore_get->footer("\nExamples:\n  cotask semaphore get db -o yaml");
  semaphore_get->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::Semaphore> found = c.GetSemaphore(name);
      if (!found.ok()) return Fail(found.status());
      print_semaphore(*found, f);
      return 0;
    };
  });

  // queue ...
  CLI::App* queue = app.add_subcommand("queue", "named queues of dispatch tasks (asyncio.Queue)");
  queue->footer(
      "\nExamples:\n  cotask queue create emails --order priority --maxsize 10000\n  cotask "
      "queue list");
  queue->require_subcommand(1);
  auto print_queues = [](const std::vector<const v1::Queue*>& queues,
                         const google::protobuf::Message& message,
                         Format f) { Print(message, f, QueuesTable(queues)); };
  std::string queue_order = "fifo";
  int64_t queue_maxsize = 0;
  CLI::App* queue_create = queue->add_subcommand("create", "declare a queue");
  queue_create->add_option("name", name, "its name")->required();
  queue_create->add_option("--order", queue_order, "fifo, lifo or priority")
      ->check(CLI::IsMember({"fifo", "lifo", "priority"}, CLI::ignore_case));
  queue_create
      ->add_option("--maxsize", queue_maxsize,
                   "tasks not started at most (default: the server's --queue_maxsize)")
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  queue_create->footer("\nExamples:\n  cotask queue create thumbnails --order lifo --maxsize 500");
  queue_create->callback([&] {
    action = [&](Client& c, Format f) {
      v1::CreateQueueRequest request;
      request.set_name(name);
      v1::Queue::Order order = v1::Queue::FIFO;
      v1::Queue::Order_Parse(absl::AsciiStrToUpper(queue_order), &order);
      request.set_order(order);
      request.set_maxsize(queue_maxsize);
      absl::StatusOr<v1::Queue> created = c.CreateQueue(request);
      if (!created.ok()) return Fail(created.status());
      print_queues({&*created}, *created, f);
      return 0;
    };
  });
  auto queue_command = [&](const char* command, const char* help,
                           const std::function<absl::StatusOr<v1::Queue>(Client&)>& call) {
    CLI::App* sub = queue->add_subcommand(command, help);
    sub->add_option("name", name, "the queue's name")->required();
    sub->footer(absl::StrCat("\nExamples:\n  cotask queue ", command, " emails"));
    sub->callback([&, call] {
      action = [&, call](Client& c, Format f) {
        absl::StatusOr<v1::Queue> result = call(c);
        if (!result.ok()) return Fail(result.status());
        print_queues({&*result}, *result, f);
        return 0;
      };
    });
  };
  queue_command("get", "show a queue", [&](Client& c) { return c.GetQueue(name); });
  queue_command("pause", "stop giving the queue's tasks to workers",
                [&](Client& c) { return c.PauseQueue(name); });
  queue_command("resume", "give the queue's tasks to workers again",
                [&](Client& c) { return c.ResumeQueue(name); });
  CLI::App* queue_list = queue->add_subcommand("list", "list queues by name");
  queue_list->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::ListQueuesResponse> all = c.ListQueues();
      if (!all.ok()) return Fail(all.status());
      std::vector<const v1::Queue*> rows;
      for (const v1::Queue& one : all->queues()) rows.push_back(&one);
      print_queues(rows, *all, f);
      return 0;
    };
  });

  // workers
  std::string workers_queue;
  CLI::App* workers = app.add_subcommand("workers", "list the workers connected");
  workers->add_option("-q,--queue", workers_queue, "only those serving this queue");
  workers->footer("\nExamples:\n  cotask workers -q emails -o wide");
  workers->callback([&] {
    action = [&](Client& c, Format f) {
      absl::StatusOr<v1::ListWorkersResponse> all = c.ListWorkers(workers_queue);
      if (!all.ok()) return Fail(all.status());
      std::vector<const v1::Worker*> rows;
      for (const v1::Worker& one : all->workers()) rows.push_back(&one);
      Print(*all, f, WorkersTable(rows, f == Format::kWide, absl::Now()));
      return 0;
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // The failing (sub)command's usage, then the error: exit 2.
    const CLI::App* where = &app;
    for (bool deeper = true; deeper;) {
      deeper = false;
      for (const CLI::App* sub : where->get_subcommands()) {
        where = sub;
        deeper = true;
        break;
      }
    }
    std::cerr << where->help() << "cotask: " << e.what() << "\n";
    return 2;
  }
  ClientOptions options;
  options.server = g.server;
  options.timeout = DurationOf(g.timeout);
  Client client(options);
  return action(client, FormatOf(g.output));
}

}  // namespace cotask::cli

int main(int argc, char** argv) {
  // (CLI11 reports through exceptions; Main catches its parse errors. Anything else, such as
  // running out of memory, ends here with one line.)
  try {
    return cotask::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cotask: %s\n", e.what());
    return 1;
  }
}
