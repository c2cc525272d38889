#include "scheduler/engine/engine.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/engine/errors.h"
#include "scheduler/engine/records.h"
#include "scheduler/engine/validation.h"
#include "scheduler/process/process_supervisor.h"
#include "scheduler/runtime/check.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "scheduler/runtime/timeout.h"

namespace cotask::engine {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxIdBytes = 128;
// Groups nest at most this deep (ending a group ends its ancestors recursively).
constexpr int kMaxGroupDepth = 32;
// A group keeps the first failures of its children, and its error message names the first few.
constexpr int kMaxFailuresKept = 100;
constexpr int kMaxFailuresNamed = 10;
// Entries of a task's options.acquire and options.wait_events.
constexpr int kMaxAcquire = 16;
constexpr int kMaxWaitEvents = 16;
constexpr int kMaxAttempts = 100;
constexpr double kMaxMultiplier = 10;
constexpr int kMaxPriority = 1000;

bool LabelsMatch(const google::protobuf::Map<std::string, std::string>& have,
                 const google::protobuf::Map<std::string, std::string>& want) {
  for (const auto& [key, value] : want) {
    auto it = have.find(key);
    if (it == have.end() || it->second != value) return false;
  }
  return true;
}

absl::Status ValidateLookupKey(const std::string& key, const char* field) {
  if (key.empty()) return InvalidField(field, "required");
  return ValidateBytes(key.size(), field, kMaxIdBytes);
}

struct Page {
  int size;
  std::string after;  // the key the page token resumes after; "" for the first page
};

// The common start of ListTasks and ListGroups: the page size, the labels filter checked, and
// where the page token resumes. `query` becomes the request without its paging fields: the
// query a token is tied to.
template <class Request>
absl::StatusOr<Page> StartPage(const Request& request, const LabelBounds& bounds, Request* query) {
  COTASK_ASSIGN_OR_RETURN(int size, PageSize(request.page_size(), kDefaultPageSize, kMaxPageSize));
  COTASK_RETURN_IF_ERROR(ValidateLabels(request.labels(), "labels", bounds));
  *query = request;
  query->clear_page_size();
  query->clear_page_token();
  Page page{size, {}};
  if (!request.page_token().empty()) {
    COTASK_ASSIGN_OR_RETURN(page.after, DecodePageToken(*query, request.page_token()));
  }
  return page;
}

std::string GroupFailureMessage(const v1::Group& group) {
  std::vector<std::string> parts;
  for (const v1::ChildFailure& f : group.failures()) {
    if (static_cast<int>(parts.size()) == kMaxFailuresNamed) break;
    parts.push_back(absl::StrCat(f.has_group() ? "group " : "task ",
                                 f.has_group() ? f.group() : f.task(), " ",
                                 v1::Task::State_Name(f.state()), ": ", f.error().message()));
  }
  const int count = group.failure_count();
  const int unnamed = count - static_cast<int>(parts.size());
  return absl::StrCat("group ", group.name(), ": ", count, count == 1 ? " failure" : " failures",
                      " (", absl::StrJoin(parts, "; "),
                      unnamed > 0 ? absl::StrCat("; and ", unnamed, " more") : "", ")");
}

}  // namespace

Engine::Engine(runtime::EventLoop& loop, process::ProcessSupervisor& processes,
               EngineOptions options)
    : loop_(loop), processes_(processes), options_(std::move(options)) {
  for (const auto& [name, limit] : options_.semaphores) {
    COTASK_CHECK(permits_.Declare(name, limit).ok(), "a semaphore declared twice");
  }
  for (const QueueSpec& queue : options_.queues) DeclareQueue(queue, /*declared=*/true);
  idle_.Set();
}

Engine::~Engine() { delayed_timer_.Cancel(); }

// ---------------------------------------------------------------------------------------------
// Creating tasks

absl::Status Engine::CheckGroupAccepts(const std::string& name, const char* field) const {
  auto it = groups_.find(name);
  return CheckGroupAccepts(it == groups_.end() ? nullptr : it->second.get(), name, field);
}

absl::Status Engine::CheckGroupAccepts(const GroupRecord* record, const std::string& name,
                                       const char* field) {
  if (record == nullptr) {
    return InvalidField(field, absl::StrCat("no group named \"", absl::CHexEscape(name), "\""));
  }
  const v1::Group& group = record->group;
  if (group.state() == v1::Group::OPEN) return absl::OkStatus();
  std::string why = record->aborted     ? "a child failed"
                    : record->cancelled ? "it was cancelled"
                    : record->timed_out ? "its deadline passed"
                                        : "it was closed";
  return Error(absl::StatusCode::kFailedPrecondition, "GROUP_NOT_OPEN",
               absl::StrCat("group ", name, " takes no new tasks: ", why, " (state ",
                            v1::Group::State_Name(group.state()), ")"),
               {{"group", name}, {"state", v1::Group::State_Name(group.state())}});
}

absl::Status Engine::ValidateCreate(const v1::CreateTaskRequest& request,
                                    const GroupRecord* group) const {
  const v1::TaskSpec& spec = request.spec();
  switch (spec.kind_case()) {
    case v1::TaskSpec::KIND_NOT_SET:
      return InvalidField("spec", "required: one of sleep, exec, dispatch");
    case v1::TaskSpec::kDispatch:
      COTASK_RETURN_IF_ERROR(ValidateDispatch(request));
      break;
    case v1::TaskSpec::kSleep: {
      const v1::SleepTask& sleep = spec.sleep();
      COTASK_RETURN_IF_ERROR(
          ValidateDuration(sleep.duration(), "spec.sleep.duration", options_.max_duration)
              .status());
      COTASK_RETURN_IF_ERROR(
          ValidateBytes(sleep.result().size(), "spec.sleep.result", options_.max_payload_bytes));
      if (sleep.has_error()) {
        if (sleep.error().code() <= 0 || sleep.error().code() > 16) {
          return InvalidField("spec.sleep.error.code", "must be a google.rpc.Code from 1 to 16",
                              "1..16");
        }
        COTASK_RETURN_IF_ERROR(ValidateBytes(sleep.error().ByteSizeLong(), "spec.sleep.error",
                                             options_.max_payload_bytes));
      }
      break;
    }
    case v1::TaskSpec::kExec: {
      const v1::ExecTask& exec = spec.exec();
      if (exec.argv().empty()) return InvalidField("spec.exec.argv", "required: the program");
      if (exec.argv_size() > static_cast<int>(options_.max_exec_args)) {
        return InvalidField("spec.exec.argv",
                            absl::StrCat(exec.argv_size(), " arguments, more than the limit"),
                            absl::StrCat(options_.max_exec_args));
      }
      size_t bytes = exec.cwd().size();
      for (int i = 0; i < exec.argv_size(); ++i) {
        if (absl::StrContains(exec.argv(i), '\0')) {
          return InvalidField(absl::StrCat("spec.exec.argv[", i, "]"), "contains a NUL byte");
        }
        bytes += exec.argv(i).size() + 1;
      }
      if (exec.env_size() > static_cast<int>(options_.max_exec_env)) {
        return InvalidField("spec.exec.env",
                            absl::StrCat(exec.env_size(), " variables, more than the limit"),
                            absl::StrCat(options_.max_exec_env));
      }
      for (const auto& [name, value] : exec.env()) {
        if (!IsEnvName(name) || name == "PATH") {
          return InvalidField(absl::StrCat("spec.exec.env[\"", absl::CHexEscape(name), "\"]"),
                              name == "PATH" ? "PATH is set by the server (--exec_path)"
                                             : "not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
        }
        if (absl::StrContains(value, '\0')) {
          return InvalidField(absl::StrCat("spec.exec.env[\"", name, "\"]"), "contains a NUL byte");
        }
        bytes += name.size() + value.size() + 2;
      }
      COTASK_RETURN_IF_ERROR(ValidateBytes(bytes, "spec.exec", options_.max_exec_bytes));
      if (!exec.cwd().empty() && (exec.cwd()[0] != '/' || absl::StrContains(exec.cwd(), '\0'))) {
        return InvalidField("spec.exec.cwd", "must be an absolute path");
      }
      COTASK_RETURN_IF_ERROR(
          ValidateBytes(exec.stdin().size(), "spec.exec.stdin", options_.max_payload_bytes));
      if (exec.has_kill_grace()) {
        COTASK_RETURN_IF_ERROR(
            ValidateDuration(exec.kill_grace(), "spec.exec.kill_grace", absl::Hours(1)).status());
      }
      const std::string& program = exec.argv(0);
      if (program.empty() || program[0] != '/') {
        return InvalidField("spec.exec.argv[0]",
                            "must be an absolute path (nothing is looked "
                            "up in PATH)");
      }
      if (options_.exec_allow.empty()) {
        return Error(absl::StatusCode::kFailedPrecondition, "EXEC_DISABLED",
                     "exec tasks are disabled on this server: start cotaskd with "
                     "--exec_allow=/path/to/program[,...] (or COTASK_EXEC_ALLOW) to allow them");
      }
      if (std::find(options_.exec_allow.begin(), options_.exec_allow.end(), program) ==
          options_.exec_allow.end()) {
        return Error(absl::StatusCode::kPermissionDenied, "EXEC_NOT_ALLOWED",
                     absl::StrCat("spec.exec.argv[0]: ", program,
                                  " is not on the server's --exec_allow list"),
                     {{"field", "spec.exec.argv[0]"}});
      }
      break;
    }
  }
  if (request.options().has_timeout()) {
    COTASK_RETURN_IF_ERROR(
        ValidateDuration(request.options().timeout(), "options.timeout", options_.max_duration)
            .status());
  }
  if (request.options().has_delay() && request.options().has_start_at()) {
    return InvalidField("options.start_at", "give a delay or a start_at, not both");
  }
  if (request.options().has_delay()) {
    COTASK_RETURN_IF_ERROR(
        ValidateDuration(request.options().delay(), "options.delay", options_.max_duration)
            .status());
  }
  if (request.options().has_start_at()) {
    COTASK_RETURN_IF_ERROR(
        ValidateTimestamp(request.options().start_at(), "options.start_at", options_.max_duration));
  }
  if (request.options().priority() != 0) {
    if (!spec.has_dispatch()) {
      return InvalidField("options.priority", "only dispatch tasks have a priority");
    }
    if (request.options().priority() < -kMaxPriority ||
        request.options().priority() > kMaxPriority) {
      return InvalidField("options.priority",
                          absl::StrCat(request.options().priority(), " is not -1000 to 1000"),
                          absl::StrCat(kMaxPriority));
    }
  }
  if (request.has_wait_for_room()) {
    COTASK_RETURN_IF_ERROR(
        ValidateDuration(request.wait_for_room(), "wait_for_room", absl::Minutes(1)).status());
  }
  COTASK_RETURN_IF_ERROR(ValidateCoordination(request.options()));
  COTASK_RETURN_IF_ERROR(ValidateLabels(request.labels(), "labels", LabelBoundsOf(options_)));
  COTASK_RETURN_IF_ERROR(
      ValidateBytes(request.request_id().size(), "request_id", options_.max_request_id_bytes));
  if (!request.group().empty()) {
    COTASK_RETURN_IF_ERROR(CheckGroupAccepts(group, request.group(), "group"));
  }
  return absl::OkStatus();
}

absl::Status Engine::ValidateCoordination(const v1::TaskOptions& options) const {
  if (options.after_size() > static_cast<int>(options_.max_batch_size)) {
    return InvalidField("options.after",
                        absl::StrCat(options.after_size(), " dependencies, more than the limit"),
                        absl::StrCat(options_.max_batch_size));
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (int i = 0; i < options.after_size(); ++i) {
    const std::string field = absl::StrCat("options.after[", i, "]");
    const std::string& id = options.after(i);
    COTASK_RETURN_IF_ERROR(ValidateLookupKey(id, field.c_str()));
    if (FindRecord(id) == nullptr) {
      return InvalidField(field, absl::StrCat("no task ", absl::CHexEscape(id),
                                              " (a dependency must exist when the task is made)"));
    }
    if (!seen.insert(id).second) return InvalidField(field, "listed twice");
  }
  if (options.has_retry()) {
    const v1::RetryPolicy& retry = options.retry();
    if (retry.max_attempts() < 0 || retry.max_attempts() > kMaxAttempts) {
      return InvalidField("options.retry.max_attempts", "must be 0 to 100",
                          absl::StrCat(kMaxAttempts));
    }
    absl::Duration initial = absl::Seconds(1);
    if (retry.has_initial_backoff()) {
      COTASK_ASSIGN_OR_RETURN(
          initial, ValidateDuration(retry.initial_backoff(), "options.retry.initial_backoff",
                                    options_.max_duration));
    }
    if (retry.has_max_backoff()) {
      COTASK_ASSIGN_OR_RETURN(absl::Duration max,
                              ValidateDuration(retry.max_backoff(), "options.retry.max_backoff",
                                               options_.max_duration));
      if (max < initial) {
        return InvalidField("options.retry.max_backoff", "less than initial_backoff");
      }
    }
    if (retry.multiplier() != 0 &&
        !(retry.multiplier() >= 1 && retry.multiplier() <= kMaxMultiplier)) {
      return InvalidField("options.retry.multiplier", "must be 1 to 10 (or 0 for 2)", "10");
    }
    for (int i = 0; i < retry.retry_on_size(); ++i) {
      if (retry.retry_on(i) != v1::Task::FAILED && retry.retry_on(i) != v1::Task::TIMED_OUT) {
        return InvalidField(absl::StrCat("options.retry.retry_on[", i, "]"),
                            "only FAILED and TIMED_OUT are retried");
      }
    }
  }
  if (options.acquire_size() > kMaxAcquire) {
    return InvalidField("options.acquire",
                        absl::StrCat(options.acquire_size(), " entries, more than the limit"),
                        absl::StrCat(kMaxAcquire));
  }
  seen.clear();
  for (int i = 0; i < options.acquire_size(); ++i) {
    const v1::Permit& permit = options.acquire(i);
    const std::string field = absl::StrCat("options.acquire[", i, "]");
    COTASK_RETURN_IF_ERROR(ValidateName(permit.semaphore(), absl::StrCat(field, ".semaphore")));
    const int64_t limit = permits_.Limit(permit.semaphore());
    if (limit == 0) {
      return InvalidField(absl::StrCat(field, ".semaphore"),
                          absl::StrCat("no semaphore named ", permit.semaphore(),
                                       " (declare it with --semaphores or CreateSemaphore)"));
    }
    if (permit.count() < 0 || permit.count() > limit) {
      return InvalidField(
          absl::StrCat(field, ".count"),
          absl::StrCat(permit.count(), " permits; semaphore ", permit.semaphore(), " has ", limit),
          absl::StrCat(limit));
    }
    if (!seen.insert(permit.semaphore()).second) {
      return InvalidField(absl::StrCat(field, ".semaphore"), "listed twice");
    }
  }
  if (options.wait_events_size() > kMaxWaitEvents) {
    return InvalidField("options.wait_events",
                        absl::StrCat(options.wait_events_size(), " events, more than the limit"),
                        absl::StrCat(kMaxWaitEvents));
  }
  seen.clear();
  for (int i = 0; i < options.wait_events_size(); ++i) {
    const std::string field = absl::StrCat("options.wait_events[", i, "]");
    COTASK_RETURN_IF_ERROR(ValidateName(options.wait_events(i), field));
    if (!seen.insert(options.wait_events(i)).second) return InvalidField(field, "listed twice");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Task> Engine::CreateTask(const v1::CreateTaskRequest& request) {
  const v1::CreateTaskRequest* one[] = {&request};
  google::protobuf::RepeatedPtrField<v1::Task> created;
  COTASK_RETURN_IF_ERROR(CreateBatch(one, /*name_items=*/false, &created));
  return std::move(*created.Mutable(0));
}

absl::Status Engine::CreateTasks(const v1::CreateTasksRequest& request,
                                 v1::CreateTasksResponse* reply) {
  return CreateBatch(ItemsOf(request), /*name_items=*/true, reply->mutable_tasks());
}

absl::Status Engine::CreateBatch(absl::Span<const v1::CreateTaskRequest* const> requests,
                                 bool name_items,
                                 google::protobuf::RepeatedPtrField<v1::Task>* created,
                                 std::string* full_queue) {
  if (draining_) {
    return Error(absl::StatusCode::kUnavailable, "DRAINING",
                 "the server is shutting down and takes no new tasks");
  }
  if (requests.size() > options_.max_batch_size) {
    return InvalidField("requests", absl::StrCat(requests.size(), " tasks, more than the limit"),
                        absl::StrCat(options_.max_batch_size, " tasks"));
  }
  // Validate everything first: a batch is created whole or not at all.
  size_t new_tasks = 0;
  // (Views of the requests' ids, each hashed once for the batch and task_requests_.)
  absl::flat_hash_set<RequestKey, RequestHash, RequestEq> batch_request_ids;
  std::vector<std::optional<RequestKey>> request_keys(requests.size());
  // By item: its group's record (null: none, or no such group). A batch's items are mostly in
  // one group: looked up once for a run of them.
  std::vector<GroupRecord*> item_groups(requests.size(), nullptr);
  const std::string* last_group = nullptr;
  GroupRecord* last_group_record = nullptr;
  absl::flat_hash_set<std::string> new_events;
  absl::flat_hash_map<std::string, int64_t> dispatched;  // queue -> new tasks
  // Requests made in a runner, with its context applied.
  std::vector<const v1::CreateTaskRequest*> effective(requests.begin(), requests.end());
  std::deque<v1::CreateTaskRequest> in_runner;
  // By item: the task an earlier create made for its request id, or (repeats) an earlier item
  // of this batch makes. (Looked up once: the request ids are long, hashing them is not free.)
  std::vector<TaskRecord*> made_before(requests.size(), nullptr);
  std::vector<bool> repeats(requests.size(), false);
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string& request_id = requests[i]->request_id();
    if (!request_id.empty()) {
      const RequestKey& key = request_keys[i].emplace(request_id);
      if (auto it = task_requests_.find(key); it != task_requests_.end()) {
        made_before[i] = it->task;
        continue;
      }
      if (!batch_request_ids.insert(key).second) {
        repeats[i] = true;
        continue;
      }
    }
    if (const std::string& group = requests[i]->group(); !group.empty()) {
      if (last_group == nullptr || *last_group != group) {
        auto it = groups_.find(group);
        last_group = &group;
        last_group_record = it == groups_.end() ? nullptr : it->second.get();
      }
      item_groups[i] = last_group_record;
    }
    absl::Status status;
    if (!requests[i]->runner().empty()) {
      absl::StatusOr<RunnerRecord*> runner = FindOpenRunner(requests[i]->runner(), "runner");
      status = runner.status();
      if (runner.ok()) {
        effective[i] = &in_runner.emplace_back(*requests[i]);
        ApplyRunnerContext(**runner, &in_runner.back());
      }
    }
    if (status.ok()) status = ValidateCreate(*effective[i], item_groups[i]);
    if (status.ok() && name_items && requests[i]->has_wait_for_room()) {
      status = InvalidField("wait_for_room",
                            "a batch waits as a whole: set CreateTasksRequest.wait_for_room");
    }
    if (!status.ok()) {
      return !name_items ? status : PrefixField(status, absl::StrCat("requests[", i, "]."));
    }
    for (const std::string& name : effective[i]->options().wait_events()) {
      if (!events_.contains(name)) new_events.insert(name);
    }
    if (effective[i]->spec().has_dispatch()) ++dispatched[effective[i]->spec().dispatch().queue()];
    ++new_tasks;
  }
  if (events_.size() + new_events.size() > options_.max_events) {
    return Error(
        absl::StatusCode::kResourceExhausted, "TOO_MANY_EVENTS",
        absl::StrCat("the server has ", events_.size(), " named events; ", new_events.size(),
                     " more would pass --max_events=", options_.max_events),
        {{"bound", absl::StrCat(options_.max_events)}});
  }
  if (pending_tasks_ + new_tasks > options_.max_pending_tasks) {
    return Error(
        absl::StatusCode::kResourceExhausted, "TOO_MANY_PENDING_TASKS",
        absl::StrCat("the server has ", pending_tasks_, " tasks that have not ended; ", new_tasks,
                     " more would pass --max_pending_tasks=", options_.max_pending_tasks),
        {{"bound", absl::StrCat(options_.max_pending_tasks)}});
  }
  if (!dispatched.empty()) {
    std::string full;
    if (absl::Status room = CheckQueuesHaveRoom(dispatched, &full); !room.ok()) {
      if (full_queue != nullptr) {
        *full_queue = full;  // the caller may wait, and counts the refusal if it gives up
      } else if (!full.empty() && options_.observer != nullptr) {
        options_.observer->OnQueueFull(full);
      }
      return room;
    }
  }
  created->Reserve(created->size() + static_cast<int>(effective.size()));
  for (size_t i = 0; i < effective.size(); ++i) {
    if (repeats[i]) made_before[i] = task_requests_.find(*request_keys[i])->task;
    ViewInto(made_before[i] != nullptr ? *made_before[i]
                                       : AddTask(*effective[i], item_groups[i], request_keys[i]),
             created->Add());
  }
  ForgetFinished();
  return absl::OkStatus();
}

Engine::TaskKey Engine::NewTaskKey(int64_t now) {
  // Microseconds since the epoch, strictly increasing: ids are unique and sort by creation.
  last_id_micros_ = std::max(now / 1000, last_id_micros_ + 1);
  return static_cast<TaskKey>(last_id_micros_);
}

Engine::TaskRecord* Engine::FindRecord(absl::string_view id) const {
  const std::optional<TaskKey> key = TaskKeyOf(id);
  if (!key.has_value()) return nullptr;
  auto it = tasks_.find(*key);
  return it == tasks_.end() ? nullptr : it->second.get();
}

Engine::TaskRecord& Engine::RecordOf(absl::string_view id) const {
  TaskRecord* record = FindRecord(id);
  COTASK_CHECK(record != nullptr, "a task that must be there is not");
  return *record;
}

Engine::TaskRecord& Engine::AddTask(const v1::CreateTaskRequest& request, GroupRecord* group,
                                    const std::optional<RequestKey>& request_key) {
  auto owned = std::make_unique<TaskRecord>(options_.max_log_bytes);
  TaskRecord& record = *owned;
  v1::Task& task = record.task;
  // (A string field set to "" still allocates: only what is there is set.)
  record.times.create = NowNanos();
  const TaskKey key = record.key = NewTaskKey(record.times.create);
  // (Its id is its key's: IdOf.)
  // (Its group's name is its group record's while that is kept: GroupOf.)
  *task.mutable_labels() = request.labels();
  *task.mutable_spec() = request.spec();
  if (request.has_options()) *task.mutable_options() = request.options();
  task.set_attempt(1);
  if (!request.request_id().empty()) task.set_request_id(request.request_id());
  task.set_detached(request.detached());
  if (request.options().has_delay()) {
    *task.mutable_start_after() = TimeUtil::NanosecondsToTimestamp(
        record.times.create + TimeUtil::DurationToNanoseconds(request.options().delay()));
  } else if (request.options().has_start_at()) {
    *task.mutable_start_after() = request.options().start_at();
  }
  if (!request.runner().empty()) task.set_runner(request.runner());
  // What it waits for, as far as is known before its life begins (Life keeps it up to date).
  // (Most tasks wait for nothing: no Waiting message for them.)
  for (const std::string& id : request.options().after()) {
    if (!IsTerminal(RecordOf(id).task.state())) task.mutable_waiting()->add_tasks(id);
  }
  // (A delayed task without dependencies shows its start time on read, View.)
  if (task.has_start_after() && !request.options().after().empty()) {
    *task.mutable_waiting()->mutable_until() = task.start_after();
  }
  for (const std::string& name : request.options().wait_events()) {
    if (!EnsureEvent(name).signal.is_set()) task.mutable_waiting()->add_events(name);
  }
  tasks_.emplace(key, std::move(owned));
  if (request_key.has_value()) {
    task_requests_.insert(RequestEntry{&record, request_key->hash});
  }
  if (!request.runner().empty()) {
    record.runner = runners_.at(request.runner()).get();
    record.runner->tasks.insert(IdOf(record));
  }
  if (request.spec().has_dispatch()) {
    record.dispatch = std::make_unique<DispatchState>();
    record.dispatch->queue = EnsureQueue(request.spec().dispatch().queue());  // room was checked
    record.dispatch->ordinal = static_cast<int64_t>(++task_ordinal_);
  }
  ++pending_tasks_;
  idle_.Clear();
  if (group != nullptr) {
    record.group = group;
    group->task_keys.push_back(key);
    group->active_tasks.insert(&record);
    group->group.set_children(group->group.children() + 1);
    group->group.set_active_children(group->group.active_children() + 1);
  }
  Transition(record, v1::Task::PENDING, {}, record.times.create);
  // A task that waits only for its start time gets its coroutine then: until it starts, a
  // delayed task costs its record and a place in delayed_, not a coroutine frame (a million can
  // wait).
  if (task.has_start_after() && request.options().after().empty()) {
    const absl::Time start = ToTime(task.start_after());
    if (start > absl::Now()) {
      AddDelayed(record, start);
      return record;
    }
  }
  record.life = loop_.CreateTask(Life(&record));
  return record;
}

void Engine::AddDelayed(TaskRecord& task, absl::Time start) {
  delayed_.emplace(start, &task);
  if (start < delayed_timer_at_) ArmDelayedTimer();
}

void Engine::ArmDelayedTimer() {
  delayed_timer_.Cancel();
  delayed_timer_ = runtime::TimerHandle();
  delayed_timer_at_ = absl::InfiniteFuture();
  if (delayed_.empty()) return;
  delayed_timer_at_ = delayed_.begin()->first;
  delayed_timer_ =
      loop_.CallLater(ToChrono(std::max(delayed_timer_at_ - absl::Now(), absl::ZeroDuration())),
                      [this] { StartDue(); });
}

void Engine::StartDue() {
  const absl::Time now = absl::Now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    TaskRecord& task = *delayed_.begin()->second;
    delayed_.erase(delayed_.begin());
    task.life = loop_.CreateTask(Life(&task));
  }
  ArmDelayedTimer();
}

v1::Task Engine::View(const TaskRecord& task) const {
  v1::Task view;
  ViewInto(task, &view);
  return view;
}

void Engine::ViewInto(const TaskRecord& task, v1::Task* view) const {
  view->CopyFrom(task.task);
  view->set_id(IdOf(task));
  if (task.group != nullptr) view->set_group(task.group->group.name());
  if (task.empty_result) view->mutable_result();
  *view->mutable_create_time() = TimestampOf(task.times.create);
  if (task.times.start != 0) *view->mutable_start_time() = TimestampOf(task.times.start);
  if (task.times.end != 0) *view->mutable_end_time() = TimestampOf(task.times.end);
  if (!task.started && task.task.state() == v1::Task::PENDING && task.task.has_start_after() &&
      !task.task.waiting().has_until()) {
    *view->mutable_waiting()->mutable_until() = task.task.start_after();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading and cancelling tasks

absl::StatusOr<Engine::TaskRecord*> Engine::FindTask(const std::string& id,
                                                     const char* field) const {
  COTASK_RETURN_IF_ERROR(ValidateLookupKey(id, field));
  TaskRecord* record = FindRecord(id);
  if (record == nullptr) {
    return Error(absl::StatusCode::kNotFound, "TASK_NOT_FOUND",
                 absl::StrCat("no task ", absl::CHexEscape(id),
                              " (never created, or ended long enough ago to be forgotten)"),
                 {{"task", id}});
  }
  return record;
}

absl::StatusOr<v1::Task> Engine::GetTask(const v1::GetTaskRequest& request) const {
  COTASK_ASSIGN_OR_RETURN(TaskRecord * record, FindTask(request.id(), "id"));
  if (IsTerminal(record->task.state())) record->outcome_read = true;
  return View(*record);
}

absl::StatusOr<v1::ListTasksResponse> Engine::ListTasks(const v1::ListTasksRequest& request) const {
  if (!v1::Task::State_IsValid(request.state())) {
    return InvalidField("state", absl::StrCat("unknown value ", request.state()));
  }
  v1::ListTasksRequest query;
  if (!request.queue().empty()) COTASK_RETURN_IF_ERROR(ValidateName(request.queue(), "queue"));
  COTASK_ASSIGN_OR_RETURN(Page page, StartPage(request, LabelBoundsOf(options_), &query));
  v1::ListTasksResponse response;
  auto matches = [&](const TaskRecord& record) {
    return (request.state() == v1::Task::STATE_UNSPECIFIED ||
            record.task.state() == request.state()) &&
           (request.queue().empty() || (record.dispatch != nullptr &&
                                        record.dispatch->queue->queue.name() == request.queue())) &&
           LabelsMatch(record.task.labels(), request.labels());
  };
  std::string last;
  bool more = false;
  auto visit = [&](const TaskRecord& record) {
    if (!matches(record)) return true;
    if (response.tasks_size() == page.size) {
      more = true;
      return false;
    }
    *response.add_tasks() = View(record);
    if (IsTerminal(record.task.state())) record.outcome_read = true;
    last = IdOf(record);
    return true;
  };
  TaskKey after = 0;  // (no task has key 0: the first page starts at the first task)
  if (!page.after.empty()) {
    const std::optional<TaskKey> key = TaskKeyOf(page.after);
    if (!key.has_value()) return InvalidField("page_token", "not a token this server made");
    after = *key;
  }
  if (!request.group().empty()) {
    auto group = groups_.find(request.group());
    if (group != groups_.end()) {
      const std::vector<TaskKey>& keys = group->second->task_keys;
      for (auto it = std::upper_bound(keys.begin(), keys.end(), after); it != keys.end(); ++it) {
        auto task = tasks_.find(*it);
        if (task == tasks_.end()) continue;  // forgotten
        if (!visit(*task->second)) break;
      }
    }
  } else {
    for (auto it = tasks_.upper_bound(after); it != tasks_.end(); ++it) {
      if (!visit(*it->second)) break;
    }
  }
  if (more) response.set_next_page_token(EncodePageToken(query, last));
  return response;
}

absl::StatusOr<v1::CancelTaskResponse> Engine::CancelTask(const v1::CancelTaskRequest& request) {
  COTASK_ASSIGN_OR_RETURN(TaskRecord * record, FindTask(request.id(), "id"));
  COTASK_RETURN_IF_ERROR(
      ValidateBytes(request.message().size(), "message", options_.max_payload_bytes));
  v1::CancelTaskResponse response;
  response.set_cancelled(
      CancelTaskRecord(*record, request.message().empty() ? "CancelTask" : request.message()));
  *response.mutable_task() = View(*record);
  if (IsTerminal(record->task.state())) record->outcome_read = true;
  return response;
}

void Engine::AddEndWaiter(TaskRecord& task, const std::shared_ptr<runtime::Event>& event) {
  if (IsTerminal(task.task.state())) {
    event->Set();
    return;
  }
  // Calls that gave up (timeout, cancel) leave expired entries: drop them as new ones come.
  std::vector<std::weak_ptr<runtime::Event>>& waiters = task.rare().end_waiters;
  std::erase_if(waiters, [](const std::weak_ptr<runtime::Event>& w) { return w.expired(); });
  waiters.push_back(event);
}

runtime::Task<v1::Task> Engine::Run(v1::CreateTaskRequest request) {
  absl::StatusOr<v1::Task> made = absl::InternalError("not made");
  if (request.has_wait_for_room()) {
    made = co_await CreateTaskWaiting(request);
  } else {
    made = CreateTask(request);
  }
  COTASK_CO_ASSIGN_OR_RETURN(v1::Task created, std::move(made));
  const std::string& id = created.id();
  auto ended = std::make_shared<runtime::Event>();
  while (true) {
    TaskRecord* found = FindRecord(id);
    if (found == nullptr) {
      co_return Error(absl::StatusCode::kNotFound, "TASK_NOT_FOUND",
                      absl::StrCat("task ", id, " ended and was forgotten before Run returned"));
    }
    TaskRecord& record = *found;
    if (IsTerminal(record.task.state())) {
      record.outcome_read = true;
      co_return View(record);
    }
    ended->Clear();
    AddEndWaiter(record, ended);
    if (absl::Status waited = co_await ended->Wait(); !waited.ok()) {
      // The call ended first (its deadline, or the client went away).
      if (TaskRecord* again = FindRecord(id); again != nullptr && !again->task.detached()) {
        CancelTaskRecord(*again, "the Run call that created it ended before the task did");
      }
      co_return waited;
    }
  }
}

runtime::Task<v1::WaitTasksResponse> Engine::WaitTasks(v1::WaitTasksRequest request) {
  if (request.ids().empty()) co_return InvalidField("ids", "required: at least one task id");
  if (request.ids_size() > static_cast<int>(options_.max_batch_size)) {
    co_return InvalidField("ids", absl::StrCat(request.ids_size(), " ids, more than the limit"),
                           absl::StrCat(options_.max_batch_size, " ids"));
  }
  if (!v1::WaitTasksRequest::ReturnWhen_IsValid(request.return_when())) {
    co_return InvalidField("return_when", absl::StrCat("unknown value ", request.return_when()));
  }
  absl::Duration timeout = absl::ZeroDuration();
  if (request.has_timeout()) {
    COTASK_CO_ASSIGN_OR_RETURN(
        timeout, ValidateDuration(request.timeout(), "timeout", options_.max_duration));
  }
  auto changed = std::make_shared<runtime::Event>();
  for (int i = 0; i < request.ids_size(); ++i) {
    const std::string field = absl::StrCat("ids[", i, "]");
    COTASK_CO_ASSIGN_OR_RETURN(TaskRecord * record, FindTask(request.ids(i), field.c_str()));
    AddEndWaiter(*record, changed);
  }
  const auto deadline = loop_.Now() + ToChrono(timeout);
  while (true) {
    v1::WaitTasksResponse response;
    bool exception = false;
    for (const std::string& id : request.ids()) {
      TaskRecord* record = FindRecord(id);
      if (record == nullptr) continue;  // ended and forgotten meanwhile
      const v1::Task& task = record->task;
      if (IsTerminal(task.state())) {
        record->outcome_read = true;
        ViewInto(*record, response.add_done());
        exception |= task.state() == v1::Task::FAILED || task.state() == v1::Task::TIMED_OUT;
      } else {
        *response.add_pending() = View(*record);
      }
    }
    const bool all = response.pending().empty();
    switch (request.return_when()) {
      case v1::WaitTasksRequest::FIRST_COMPLETED:
        if (!response.done().empty()) co_return response;
        break;
      case v1::WaitTasksRequest::FIRST_EXCEPTION:
        if (exception || all) co_return response;
        break;
      default:
        if (all) co_return response;
        break;
    }
    changed->Clear();
    if (timeout > absl::ZeroDuration()) {
      const auto left = deadline - loop_.Now();
      if (left <= runtime::EventLoop::Duration::zero()) co_return response;
      absl::Status waited = co_await runtime::Timeout(left, changed->Wait());
      if (absl::IsDeadlineExceeded(waited)) continue;  // answer with what has ended by now
      COTASK_CO_RETURN_IF_ERROR(waited);
    } else {
      COTASK_CO_RETURN_IF_ERROR(co_await changed->Wait());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Groups

absl::StatusOr<v1::Group> Engine::CreateGroup(const v1::CreateGroupRequest& request) {
  if (draining_) {
    return Error(absl::StatusCode::kUnavailable, "DRAINING",
                 "the server is shutting down and takes no new groups");
  }
  COTASK_RETURN_IF_ERROR(
      ValidateBytes(request.request_id().size(), "request_id", options_.max_request_id_bytes));
  if (!request.request_id().empty()) {
    if (auto it = group_requests_.find(request.request_id()); it != group_requests_.end()) {
      if (auto group = groups_.find(it->second); group != groups_.end()) {
        return View(*group->second);
      }
    }
  }
  COTASK_RETURN_IF_ERROR(ValidateName(request.name(), "name"));
  if (!v1::Group::Policy_IsValid(request.policy())) {
    return InvalidField("policy", absl::StrCat("unknown value ", request.policy()));
  }
  RunnerRecord* runner = nullptr;
  google::protobuf::Map<std::string, std::string> labels = request.labels();
  if (!request.runner().empty()) {
    COTASK_ASSIGN_OR_RETURN(runner, FindOpenRunner(request.runner(), "runner"));
    for (const auto& [key, value] : runner->context.labels()) labels.insert({key, value});
  }
  COTASK_RETURN_IF_ERROR(ValidateLabels(labels, "labels", LabelBoundsOf(options_)));
  if (request.has_deadline() && request.has_timeout()) {
    return InvalidField("timeout", "give a deadline or a timeout, not both");
  }
  std::optional<absl::Time> deadline;
  const absl::Time now = absl::Now();
  if (request.has_timeout()) {
    COTASK_ASSIGN_OR_RETURN(absl::Duration timeout,
                            ValidateDuration(request.timeout(), "timeout", options_.max_duration));
    deadline = now + timeout;
  }
  if (request.has_deadline()) {
    const google::protobuf::Timestamp& at = request.deadline();
    COTASK_RETURN_IF_ERROR(ValidateTimestamp(at, "deadline", options_.max_duration));
    deadline = absl::FromUnixSeconds(at.seconds()) + absl::Nanoseconds(at.nanos());
  }
  if (groups_.contains(request.name())) {
    return Error(absl::StatusCode::kAlreadyExists, "GROUP_EXISTS",
                 absl::StrCat("a group named ", request.name(), " exists already"),
                 {{"group", request.name()}});
  }
  GroupRecord* parent = nullptr;
  if (!request.parent().empty()) {
    COTASK_RETURN_IF_ERROR(CheckGroupAccepts(request.parent(), "parent"));
    parent = groups_.at(request.parent()).get();
    if (parent->depth >= kMaxGroupDepth) {
      return InvalidField("parent",
                          absl::StrCat("groups nest at most ", kMaxGroupDepth, " deep, and ",
                                       request.parent(), " is that deep"),
                          absl::StrCat(kMaxGroupDepth, " levels"));
    }
  }
  if (active_groups_ >= options_.max_active_groups) {
    return Error(absl::StatusCode::kResourceExhausted, "TOO_MANY_GROUPS",
                 absl::StrCat("the server has ", active_groups_,
                              " groups that have not ended (--max_active_groups)"),
                 {{"bound", absl::StrCat(options_.max_active_groups)}});
  }

  auto owned = std::make_unique<GroupRecord>(options_.max_log_bytes);
  GroupRecord& record = *owned;
  v1::Group& group = record.group;
  group.set_name(request.name());
  group.set_parent(request.parent());
  group.set_policy(request.policy());
  *group.mutable_labels() = std::move(labels);
  group.set_request_id(request.request_id());
  group.set_runner(request.runner());
  group.set_detached(request.detached());
  *group.mutable_create_time() = NowProto();
  if (deadline.has_value()) {
    *group.mutable_deadline() = TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(*deadline));
  }
  record.parent = parent;
  if (parent != nullptr) record.depth = parent->depth + 1;
  record.runner = runner;
  if (runner != nullptr) runner->groups.insert(request.name());
  groups_.emplace(request.name(), std::move(owned));
  if (!request.request_id().empty()) group_requests_[request.request_id()] = request.name();
  ++active_groups_;
  if (parent != nullptr) {
    parent->active_groups.insert(&record);
    parent->group_names.push_back(request.name());
    parent->group.set_children(parent->group.children() + 1);
    parent->group.set_active_children(parent->group.active_children() + 1);
  }
  TransitionGroup(record, v1::Group::OPEN);
  if (deadline.has_value()) {
    const auto delay = ToChrono(std::max(*deadline - absl::Now(), absl::ZeroDuration()));
    record.deadline_timer =
        loop_.CallLater(delay, [this, name = request.name()] { GroupDeadline(name); });
  }
  ForgetFinished();
  return View(record);
}

v1::Group Engine::View(const GroupRecord& group) {
  v1::Group view = group.group;
  view.set_last_sequence(group.log.next_sequence() - 1);
  return view;
}

absl::StatusOr<Engine::GroupRecord*> Engine::FindGroup(const std::string& name,
                                                       const char* field) const {
  COTASK_RETURN_IF_ERROR(ValidateLookupKey(name, field));
  auto it = groups_.find(name);
  if (it == groups_.end()) {
    return Error(absl::StatusCode::kNotFound, "GROUP_NOT_FOUND",
                 absl::StrCat("no group named ", absl::CHexEscape(name)), {{"group", name}});
  }
  return it->second.get();
}

absl::StatusOr<v1::Group> Engine::GetGroup(const v1::GetGroupRequest& request) const {
  COTASK_ASSIGN_OR_RETURN(GroupRecord * record, FindGroup(request.name(), "name"));
  return View(*record);
}

absl::StatusOr<v1::ListGroupsResponse> Engine::ListGroups(
    const v1::ListGroupsRequest& request) const {
  if (!v1::Group::State_IsValid(request.state())) {
    return InvalidField("state", absl::StrCat("unknown value ", request.state()));
  }
  v1::ListGroupsRequest query;
  COTASK_ASSIGN_OR_RETURN(Page page, StartPage(request, LabelBoundsOf(options_), &query));
  v1::ListGroupsResponse response;
  std::string last;
  for (auto it = groups_.upper_bound(page.after); it != groups_.end(); ++it) {
    const v1::Group& group = it->second->group;
    if (!request.parent().empty() && group.parent() != request.parent()) continue;
    if (request.state() != v1::Group::STATE_UNSPECIFIED && group.state() != request.state()) {
      continue;
    }
    if (!LabelsMatch(group.labels(), request.labels())) continue;
    if (response.groups_size() == page.size) {
      response.set_next_page_token(EncodePageToken(query, last));
      break;
    }
    *response.add_groups() = View(*it->second);
    last = group.name();
  }
  return response;
}

absl::StatusOr<v1::Group> Engine::CloseGroup(const v1::CloseGroupRequest& request) {
  COTASK_ASSIGN_OR_RETURN(GroupRecord * record, FindGroup(request.name(), "name"));
  if (record->group.state() == v1::Group::OPEN) {
    TransitionGroup(*record, v1::Group::CLOSED);
    MaybeEndGroup(*record);
  }
  return View(*record);
}

absl::StatusOr<v1::CancelGroupResponse> Engine::CancelGroup(const v1::CancelGroupRequest& request) {
  COTASK_ASSIGN_OR_RETURN(GroupRecord * record, FindGroup(request.name(), "name"));
  COTASK_RETURN_IF_ERROR(
      ValidateBytes(request.message().size(), "message", options_.max_payload_bytes));
  v1::CancelGroupResponse response;
  response.set_cancelled(
      CancelGroupRecord(*record, request.message().empty() ? "CancelGroup" : request.message()));
  *response.mutable_group() = View(*record);
  return response;
}

bool Engine::CancelGroupRecord(GroupRecord& record, const std::string& message) {
  if (IsTerminal(record.group.state())) return false;
  record.cancelled = true;
  if (record.group.cancel_message().empty()) record.group.set_cancel_message(message);
  AbortGroup(record, absl::StrCat("group ", record.group.name(), " was cancelled: ", message));
  MaybeEndGroup(record);
  return true;
}

void Engine::AbortGroup(GroupRecord& record, const std::string& message) {
  if (record.group.state() == v1::Group::OPEN) TransitionGroup(record, v1::Group::CLOSED);
  // Cancelling may end children at once (those that never started), which changes the sets.
  std::vector<TaskRecord*> tasks(record.active_tasks.begin(), record.active_tasks.end());
  std::sort(tasks.begin(), tasks.end(),
            [](TaskRecord* a, TaskRecord* b) { return a->key < b->key; });
  std::vector<GroupRecord*> groups(record.active_groups.begin(), record.active_groups.end());
  for (TaskRecord* task : tasks) {
    if (!task->task.options().shield()) CancelTaskRecord(*task, message);
  }
  for (GroupRecord* group : groups) {
    if (IsTerminal(group->group.state())) continue;
    group->cancelled = true;
    if (group->group.cancel_message().empty()) group->group.set_cancel_message(message);
    AbortGroup(*group, message);
    MaybeEndGroup(*group);
  }
}

void Engine::ChildEnded(GroupRecord& record, const v1::ChildFailure* failure) {
  record.group.set_active_children(record.group.active_children() - 1);
  if (failure != nullptr) {
    record.group.set_failure_count(record.group.failure_count() + 1);
    if (record.group.failures_size() < kMaxFailuresKept) *record.group.add_failures() = *failure;
    if (record.group.policy() == v1::Group::FAIL_FAST && !record.aborted &&
        !IsTerminal(record.group.state())) {
      record.aborted = true;
      const std::string who = failure->has_group() ? absl::StrCat("group ", failure->group())
                                                   : absl::StrCat("task ", failure->task());
      AbortGroup(record, absl::StrCat("group ", record.group.name(), ": ", who, " ",
                                      v1::Task::State_Name(failure->state())));
    }
  }
  MaybeEndGroup(record);
}

void Engine::GroupDeadline(const std::string& name) {
  auto it = groups_.find(name);
  if (it == groups_.end() || IsTerminal(it->second->group.state())) return;
  GroupRecord& record = *it->second;
  record.timed_out = true;
  AbortGroup(record, absl::StrCat("group ", name, " passed its deadline"));
  MaybeEndGroup(record);
}

void Engine::MaybeEndGroup(GroupRecord& record) {
  const v1::Group& group = record.group;
  if (group.state() != v1::Group::CLOSED || group.active_children() > 0) return;
  if (!record.active_tasks.empty() || !record.active_groups.empty()) return;
  v1::Group::State end = group.failure_count() > 0 ? v1::Group::FAILED
                         : record.timed_out        ? v1::Group::TIMED_OUT
                         : record.cancelled        ? v1::Group::CANCELLED
                                                   : v1::Group::SUCCEEDED;
  TransitionGroup(record, end);
}

void Engine::TransitionGroup(GroupRecord& record, v1::Group::State to) {
  v1::Group& group = record.group;
  COTASK_CHECK(!IsTerminal(group.state()), "a terminal group state changed");
  group.set_state(to);
  const google::protobuf::Timestamp now = NowProto();
  const bool terminal = IsTerminal(to);
  absl::Status error;
  if (to == v1::Group::FAILED) {
    error = Error(static_cast<absl::StatusCode>(group.failures(0).error().code()), "GROUP_FAILED",
                  GroupFailureMessage(group), {{"failures", absl::StrCat(group.failure_count())}});
  } else if (to == v1::Group::CANCELLED) {
    error = Error(absl::StatusCode::kCancelled, "CANCELLED",
                  absl::StrCat("cancelled: ", group.cancel_message()));
  } else if (to == v1::Group::TIMED_OUT) {
    error = Error(absl::StatusCode::kDeadlineExceeded, "TIMED_OUT",
                  absl::StrCat("group ", group.name(), " passed its deadline"));
  }
  if (terminal) {
    *group.mutable_end_time() = now;
    if (!error.ok()) *group.mutable_error() = ToRpcStatus(error);
  }
  if (options_.observer != nullptr) options_.observer->OnGroupState(group, to);
  v1::Event event;
  event.set_group(group.name());
  *event.mutable_time() = now;
  event.mutable_group_state()->set_state(to);
  if (group.has_error()) *event.mutable_group_state()->mutable_error() = group.error();
  if (record.parent != nullptr && (to == v1::Group::OPEN || terminal)) {
    AppendToLog(record.parent->log, event);
  }
  AppendToLog(record.log, std::move(event), terminal);
  if (!terminal) return;

  record.deadline_timer.Cancel();
  if (record.runner != nullptr) record.runner->groups.erase(group.name());
  --active_groups_;
  finished_groups_.push_back(group.name());
  if (GroupRecord* parent = record.parent) {
    parent->active_groups.erase(&record);
    if (to == v1::Group::FAILED || to == v1::Group::TIMED_OUT) {
      v1::ChildFailure failure;
      failure.set_group(group.name());
      failure.set_state(to == v1::Group::FAILED ? v1::Task::FAILED : v1::Task::TIMED_OUT);
      *failure.mutable_error() = group.error();
      ChildEnded(*parent, &failure);
    } else {
      ChildEnded(*parent, nullptr);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Watching

void Engine::StampEvents(const v1::WatchRequest& target, std::vector<v1::Event>* events) const {
  if (target.has_task()) {
    const TaskRecord& record = RecordOf(target.task());
    const std::string& group = GroupOf(record);
    for (v1::Event& event : *events) {
      if (event.has_truncated()) continue;
      event.set_task(IdOf(record));
      if (!group.empty() && (event.has_task_state() || event.has_attempt_ended())) {
        event.set_group(group);
      }
    }
    return;
  }
  for (v1::Event& event : *events) {
    if (!event.task().empty() && event.group().empty()) event.set_group(target.group());
  }
}

runtime::Task<Engine::WatchBatch> Engine::NextEvents(v1::WatchRequest target, int64_t from,
                                                     size_t max_bytes) {
  while (true) {
    WatchBatch batch;
    std::shared_ptr<runtime::Event> changed;
    COTASK_CO_RETURN_IF_ERROR(ReadEvents(target, from, max_bytes, &batch, &changed));
    if (changed == nullptr) co_return batch;
    COTASK_CO_RETURN_IF_ERROR(co_await changed->Wait());
  }
}

absl::Status Engine::ReadEvents(const v1::WatchRequest& target, int64_t from, size_t max_bytes,
                                WatchBatch* batch, std::shared_ptr<runtime::Event>* changed) {
  TaskRecord* task = nullptr;
  EventLog* log = nullptr;
  switch (target.target_case()) {
    case v1::WatchRequest::TARGET_NOT_SET:
      return InvalidField("target", "required: a task or a group");
    case v1::WatchRequest::kTask: {
      COTASK_ASSIGN_OR_RETURN(task, FindTask(target.task(), "task"));
      log = &TaskLog(*task);
      break;
    }
    case v1::WatchRequest::kGroup: {
      COTASK_ASSIGN_OR_RETURN(GroupRecord * group, FindGroup(target.group(), "group"));
      log = &group->log;
      break;
    }
  }
  if (from < 0) return InvalidField("from_sequence", "must not be negative", "0");
  batch->events.clear();
  changed->reset();
  batch->next_sequence = log->Read(from, max_bytes, &batch->events);
  StampEvents(target, &batch->events);
  // (A reader past the end of a log that has ended has nothing more to wait for either.)
  batch->ended = log->ended() && batch->next_sequence >= log->next_sequence();
  if (batch->ended && task != nullptr) task->outcome_read = true;
  if (batch->events.empty() && target.no_follow()) batch->ended = true;  // caught up
  if (batch->events.empty() && !batch->ended) *changed = log->Changed();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Draining, bookkeeping

void Engine::StartDraining() { draining_ = true; }

runtime::Task<void> Engine::Drain(runtime::EventLoop::Duration timeout) {
  StartDraining();
  absl::Status waited = co_await runtime::Timeout(timeout, idle_.Wait());
  if (!waited.ok() && !absl::IsDeadlineExceeded(waited)) co_return waited;
  std::vector<GroupRecord*> groups;
  for (auto& [name, group] : groups_) {
    if (group->parent == nullptr && !IsTerminal(group->group.state()))
      groups.push_back(group.get());
  }
  for (GroupRecord* group : groups) CancelGroupRecord(*group, "the server is shutting down");
  std::vector<TaskRecord*> tasks;
  for (auto& [id, task] : tasks_) {
    if (!IsTerminal(task->task.state())) tasks.push_back(task.get());
  }
  for (TaskRecord* task : tasks) CancelTaskRecord(*task, "the server is shutting down");
  co_return co_await idle_.Wait();
}

void Engine::SignalIfIdle() {
  if (pending_tasks_ == 0) idle_.Set();
}

std::string Engine::IdOf(const TaskRecord& task) { return TaskIdOf(task.key); }

const std::string& Engine::GroupOf(const TaskRecord& task) {
  return task.group != nullptr ? task.group->group.name() : task.task.group();
}

EventLog& Engine::TaskLog(TaskRecord& record) {
  const v1::Task& task = record.task;
  const int deferred = std::exchange(record.deferred_events, 0);
  const TaskTimes& times = record.times;
  if (deferred >= 1) {
    AppendStateToLog(record.log, 0, TimestampOf(times.create), v1::Task::PENDING, 1);
  }
  if (deferred >= 2) {
    COTASK_CHECK(times.start != 0, "a deferred QUEUED event without its start time");
    AppendStateToLog(record.log, 0, TimestampOf(times.start), v1::Task::QUEUED, 1);
  }
  if (deferred >= 3) {
    AppendStateToLog(record.log, 0, TimestampOf(times.start), v1::Task::RUNNING, 1);
  }
  if (deferred >= 4) {
    AppendStateToLog(record.log, 0, TimestampOf(times.end), task.state(), 1, record.has_result(),
                     /*last=*/true);
  }
  return record.log;
}

void Engine::AppendToLog(EventLog& log, v1::Event event, bool last) {
  const size_t before = log.bytes();
  CountLogged(log, before, log.Append(std::move(event), last));
}

void Engine::AppendStateToLog(EventLog& log, TaskKey task, const google::protobuf::Timestamp& time,
                              v1::Task::State state, int32_t attempt, bool empty_result,
                              bool last) {
  const size_t before = log.bytes();
  CountLogged(log, before, log.AppendStateChange(task, time, state, attempt, empty_result, last));
}

void Engine::CountLogged(const EventLog& log, size_t before, int64_t dropped) {
  log_events_dropped_ += dropped;
  log_bytes_ += static_cast<int64_t>(log.bytes()) - static_cast<int64_t>(before);
  if (options_.observer != nullptr) options_.observer->OnEventLogs(log_bytes_, dropped);
}

void Engine::ForgetFinished() {
  while (finished_tasks_.size() > options_.retain_finished_tasks) {
    auto it = tasks_.find(finished_tasks_.front());
    finished_tasks_.pop_front();
    if (it == tasks_.end()) continue;
    if (!it->second->task.request_id().empty()) {
      task_requests_.erase(RequestKey(it->second->task.request_id()));
    }
    log_bytes_ -= static_cast<int64_t>(it->second->log.bytes());
    tasks_.erase(it);
  }
  while (finished_groups_.size() > options_.retain_finished_groups) {
    auto it = groups_.find(finished_groups_.front());
    finished_groups_.pop_front();
    if (it == groups_.end()) continue;
    GroupRecord* gone = it->second.get();
    // Children keep their group's name, now in their own record.
    for (const TaskKey key : gone->task_keys) {
      if (auto task = tasks_.find(key); task != tasks_.end()) {
        task->second->task.set_group(gone->group.name());
        task->second->group = nullptr;
      }
    }
    for (const std::string& name : gone->group_names) {
      if (auto group = groups_.find(name); group != groups_.end()) group->second->parent = nullptr;
    }
    if (!gone->group.request_id().empty()) group_requests_.erase(gone->group.request_id());
    log_bytes_ -= static_cast<int64_t>(gone->log.bytes());
    groups_.erase(it);
  }
}

EngineCounts Engine::counts() const {
  EngineCounts counts;
  counts.pending_tasks = pending_tasks_;
  counts.active_groups = active_groups_;
  counts.tasks = tasks_.size();
  counts.groups = groups_.size();
  counts.log_events_dropped = log_events_dropped_;
  counts.log_bytes = log_bytes_;
  counts.runners = runners_.size();
  counts.events = events_.size();
  counts.semaphores = permits_.size();
  counts.queues = queues_.size();
  counts.workers = connected_workers_;
  return counts;
}

}  // namespace cotask::engine
