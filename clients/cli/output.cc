#include "clients/cli/output.h"

#include <sys/ioctl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace cotask::cli {
namespace {

using google::protobuf::util::TimeUtil;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Flow-style nodes (as parsed from JSON) printed block-style, as people write YAML.
void MakeBlock(YAML::Node node) {
  if (node.IsMap() || node.IsSequence()) {
    node.SetStyle(YAML::EmitterStyle::Block);
    for (auto it = node.begin(); it != node.end(); ++it) {
      MakeBlock(node.IsMap() ? it->second : *it);
    }
  }
}

// The first line of a text, cut to `max` characters.
std::string Brief(const std::string& text, size_t max = 60) {
  std::string line = text.substr(0, text.find('\n'));
  if (line.size() > max) line = line.substr(0, max - 3) + "...";
  return line;
}

std::string Kind(const v1::Task& task) {
  if (task.spec().has_exec()) {
    return Brief(absl::StrCat("exec ", absl::StrJoin(task.spec().exec().argv(), " ")), 40);
  }
  if (task.spec().has_sleep()) {
    return absl::StrCat("sleep ", HumanDuration(absl::Nanoseconds(TimeUtil::DurationToNanoseconds(
                                      task.spec().sleep().duration()))));
  }
  if (task.spec().has_dispatch())
    return Brief(absl::StrCat("dispatch ", task.spec().dispatch().queue()), 40);
  return "?";
}

std::string Outcome(const v1::Task& task) {
  if (task.state() == v1::Task::PENDING && task.has_waiting()) {
    const v1::Waiting& waiting = task.waiting();
    if (waiting.tasks_size() > 0)
      return absl::StrCat("waits for ", absl::StrJoin(waiting.tasks(), ","));
    if (waiting.events_size() > 0)
      return absl::StrCat("waits for event ", absl::StrJoin(waiting.events(), ","));
    if (waiting.permits_size() > 0)
      return absl::StrCat("waits for permit ", waiting.permits(0).semaphore());
    if (waiting.has_until()) {
      return absl::StrCat("starts in ", HumanDuration(ToTime(waiting.until()) - absl::Now()));
    }
  }
  if (task.has_error()) return Brief(task.error().message());
  if (task.spec().has_exec() && task.state() == v1::Task::SUCCEEDED) {
    return absl::StrCat("exit ", task.result().exit_code());
  }
  if (task.has_result()) return Brief(task.result().output());
  return "";
}

std::string Labels(const google::protobuf::Map<std::string, std::string>& labels) {
  std::vector<std::string> parts;
  for (const auto& [key, value] : labels) parts.push_back(absl::StrCat(key, "=", value));
  std::sort(parts.begin(), parts.end());
  return absl::StrJoin(parts, ",");
}

std::string Age(const google::protobuf::Timestamp& created, absl::Time now) {
  return created.seconds() == 0 ? "" : HumanDuration(now - ToTime(created));
}

std::string Ran(const v1::Task& task, absl::Time now) {
  if (!task.has_start_time()) return "";
  const absl::Time end = task.has_end_time() ? ToTime(task.end_time()) : now;
  return HumanDuration(end - ToTime(task.start_time()));
}

std::string Time(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%H:%M:%E3S", ToTime(t), absl::LocalTimeZone());
}

}  // namespace

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

std::string ToYaml(const google::protobuf::Message& message) {
  YAML::Node node = YAML::Load(ToJson(message, false));
  MakeBlock(node);
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

size_t TerminalWidth() {
  if (const char* columns = std::getenv("COLUMNS"); columns != nullptr) {
    size_t width = 0;
    if (absl::SimpleAtoi(columns, &width)) return width;
  }
  struct winsize size {};
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    return size.ws_col;
  }
  return 0;
}

std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows, size_t width) {
  constexpr size_t kGap = 2;
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    widths[c] = header[c].size();
    for (const auto& row : rows) widths[c] = std::max(widths[c], row[c].size());
  }
  size_t total = 0;
  for (size_t w : widths) total += w + kGap;
  // Too wide: narrow the widest column, a character at a time, first down to 12 (short columns
  // such as states and ages stay whole), then down to its header; the first column (ids, which
  // people copy) is never cut. What still does not fit is cut at the edge.
  for (size_t least : {size_t{12}, size_t{4}}) {
    while (width > 0 && total > width) {
      size_t widest = 0;
      for (size_t c = 1; c < widths.size(); ++c) {
        const size_t floor = std::max(header[c].size(), least);
        if (widths[c] > floor && (widest == 0 || widths[c] > widths[widest])) widest = c;
      }
      if (widest == 0) break;
      --widths[widest];
      --total;
    }
  }
  std::string out;
  auto add_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      std::string cell = cells[c];
      if (cell.size() > widths[c]) cell = cell.substr(0, widths[c] > 3 ? widths[c] - 3 : 0) + "...";
      line += cell;
      if (c + 1 < cells.size()) line += std::string(widths[c] - cell.size() + kGap, ' ');
    }
    if (width > 0 && line.size() > width) line.resize(width);
    out += line + "\n";
  };
  add_row(header);
  for (const auto& row : rows) add_row(row);
  return out;
}

std::string HumanDuration(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d < absl::Seconds(1)) return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  if (d < absl::Minutes(1)) {
    return absl::StrCat(absl::ToInt64Milliseconds(d) / 1000, ".",
                        absl::ToInt64Milliseconds(d) % 1000 / 100, "s");
  }
  const int64_t seconds = absl::ToInt64Seconds(d);
  if (d < absl::Hours(1)) return absl::StrCat(seconds / 60, "m", seconds % 60, "s");
  if (d < absl::Hours(48)) return absl::StrCat(seconds / 3600, "h", seconds % 3600 / 60, "m");
  return absl::StrCat(seconds / 86400, "d", seconds % 86400 / 3600, "h");
}

std::string TasksTable(const std::vector<const v1::Task*>& tasks, bool wide, absl::Time now) {
  std::vector<std::string> header = {"ID", "STATE", "KIND", "GROUP", "AGE", "RAN"};
  if (wide) header.insert(header.end(), {"ATTEMPT", "RUNNER", "LABELS"});
  header.push_back("OUTCOME");
  std::vector<std::vector<std::string>> rows;
  rows.reserve(tasks.size());
  for (const v1::Task* task : tasks) {
    std::vector<std::string> row = {
        task->id(),    v1::Task::State_Name(task->state()), Kind(*task),
        task->group(), Age(task->create_time(), now),       Ran(*task, now)};
    if (wide) {
      row.insert(row.end(),
                 {absl::StrCat(task->attempt()), task->runner(), Labels(task->labels())});
    }
    row.push_back(Outcome(*task));
    rows.push_back(std::move(row));
  }
  return RenderTable(header, rows, TerminalWidth());
}

std::string GroupsTable(const std::vector<const v1::Group*>& groups, bool wide, absl::Time now) {
  std::vector<std::string> header = {"NAME", "STATE", "POLICY", "CHILDREN", "FAILURES", "AGE"};
  if (wide) header.insert(header.end(), {"PARENT", "RUNNER", "LABELS"});
  header.push_back("ERROR");
  std::vector<std::vector<std::string>> rows;
  rows.reserve(groups.size());
  for (const v1::Group* group : groups) {
    std::vector<std::string> row = {group->name(),
                                    v1::Group::State_Name(group->state()),
                                    group->policy() == v1::Group::ALL ? "all" : "fail-fast",
                                    absl::StrCat(group->active_children(), "/", group->children()),
                                    absl::StrCat(group->failure_count()),
                                    Age(group->create_time(), now)};
    if (wide) row.insert(row.end(), {group->parent(), group->runner(), Labels(group->labels())});
    row.push_back(Brief(group->error().message()));
    rows.push_back(std::move(row));
  }
  return RenderTable(header, rows, TerminalWidth());
}

std::string QueuesTable(const std::vector<const v1::Queue*>& queues) {
  std::vector<std::vector<std::string>> rows;
  rows.reserve(queues.size());
  for (const v1::Queue* queue : queues) {
    rows.push_back({queue->name(), absl::AsciiStrToLower(v1::Queue::Order_Name(queue->order())),
                    absl::StrCat(queue->size(), "/", queue->maxsize()),
                    absl::StrCat(queue->depth()), absl::StrCat(queue->leased()),
                    absl::StrCat(queue->workers()), queue->paused() ? "yes" : "no"});
  }
  return RenderTable({"NAME", "ORDER", "SIZE/MAX", "QUEUED", "LEASED", "WORKERS", "PAUSED"}, rows,
                     TerminalWidth());
}

std::string WorkersTable(const std::vector<const v1::Worker*>& workers, bool wide, absl::Time now) {
  std::vector<std::string> header = {"ID", "NAME", "QUEUES", "LEASED", "DONE", "SEEN", "AGE"};
  if (wide) header.insert(header.end(), {"DRAINING", "PEER", "LABELS"});
  std::vector<std::vector<std::string>> rows;
  rows.reserve(workers.size());
  for (const v1::Worker* worker : workers) {
    std::vector<std::string> row = {worker->id(),
                                    worker->name(),
                                    absl::StrJoin(worker->queues(), ","),
                                    absl::StrCat(worker->leases_size(), "/", worker->capacity()),
                                    absl::StrCat(worker->tasks_done()),
                                    absl::StrCat(Age(worker->last_seen_time(), now), " ago"),
                                    Age(worker->connect_time(), now)};
    if (wide) {
      row.insert(row.end(),
                 {worker->draining() ? "yes" : "no", worker->peer(), Labels(worker->labels())});
    }
    rows.push_back(std::move(row));
  }
  return RenderTable(header, rows, TerminalWidth());
}

std::string EventLine(const v1::Event& event) {
  std::string what;
  switch (event.kind_case()) {
    case v1::Event::kTaskState: {
      const v1::TaskStateChange& change = event.task_state();
      what =
          absl::StrCat(v1::Task::State_Name(change.state()), " (attempt ", change.attempt(), ")");
      if (change.has_error()) absl::StrAppend(&what, ": ", Brief(change.error().message()));
      break;
    }
    case v1::Event::kOutput:
      what = absl::StrCat(event.output().stream() == v1::Output::STDERR ? "stderr " : "stdout ",
                          Brief(event.output().data()));
      break;
    case v1::Event::kGroupState:
      what = absl::StrCat("group ", v1::Group::State_Name(event.group_state().state()));
      if (event.group_state().has_error()) {
        absl::StrAppend(&what, ": ", Brief(event.group_state().error().message()));
      }
      break;
    case v1::Event::kTruncated:
      what = absl::StrCat("(events ", event.truncated().first_sequence(), "..",
                          event.truncated().last_sequence(), " no longer kept)");
      break;
    case v1::Event::kAttemptEnded:
      what = absl::StrCat("attempt ", event.attempt_ended().attempt(), " ",
                          v1::Task::State_Name(event.attempt_ended().state()), ": ",
                          Brief(event.attempt_ended().error().message()), "; retry at ",
                          Time(event.attempt_ended().retry_time()));
      break;
    case v1::Event::kProgress:
      what = absl::StrCat("progress ", event.progress().value());
      if (!event.progress().message().empty()) {
        absl::StrAppend(&what, ": ", Brief(event.progress().message()));
      }
      break;
    case v1::Event::KIND_NOT_SET:
      break;
  }
  const std::string& about = event.task().empty() ? event.group() : event.task();
  return absl::StrCat(event.sequence(), "  ", Time(event.time()), "  ", about, "  ", what);
}

void Print(const google::protobuf::Message& message, Format format, const std::string& table) {
  std::string out;
  switch (format) {
    case Format::kTable:
    case Format::kWide:
      out = table;
      break;
    case Format::kJson:
      out = ToJson(message) + "\n";
      break;
    case Format::kYaml:
      out = ToYaml(message);
      break;
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

}  // namespace cotask::cli
