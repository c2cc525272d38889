// How the `cotask` command prints what the server answers: `-o table` (the default, columns
// that fit the terminal), `wide` (more columns), `json` (the proto's canonical JSON), `yaml`
// (the same document as YAML).
#ifndef COTASK_CLIENTS_CLI_OUTPUT_H_
#define COTASK_CLIENTS_CLI_OUTPUT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cotask/v1/scheduler.pb.h"
#include "cotask/v1/workers.pb.h"
#include "google/protobuf/message.h"

namespace cotask::cli {

enum class Format { kTable, kWide, kJson, kYaml };

// Canonical proto3 JSON; `pretty`: indented, else one line (JSON Lines for streams).
std::string ToJson(const google::protobuf::Message& message, bool pretty = true);
// The JSON document as block YAML.
std::string ToYaml(const google::protobuf::Message& message);

// A table: a header row and rows, each cell one line. Columns are as wide as their widest cell;
// if the table is wider than `width` (0: no limit), the last column is cut to fit, with "...".
std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows, size_t width);
// The terminal's width if stdout is one, else 0 (no limit); $COLUMNS wins.
size_t TerminalWidth();

// "1.5s", "3m4s", "2h1m": a duration for people, to the precision that matters.
std::string HumanDuration(absl::Duration d);

// Tables of the API's objects (wide: more columns).
std::string TasksTable(const std::vector<const v1::Task*>& tasks, bool wide, absl::Time now);
std::string GroupsTable(const std::vector<const v1::Group*>& groups, bool wide, absl::Time now);
std::string QueuesTable(const std::vector<const v1::Queue*>& queues);
std::string WorkersTable(const std::vector<const v1::Worker*>& workers, bool wide, absl::Time now);
// One line for an event of a log: "12  14:03:01.123  t...  RUNNING (attempt 1)".
std::string EventLine(const v1::Event& event);

// Prints a message in `format`: the table for tables, else JSON or YAML of the whole message.
// `table` renders the table formats.
void Print(const google::protobuf::Message& message, Format format, const std::string& table);

}  // namespace cotask::cli

#endif  // COTASK_CLIENTS_CLI_OUTPUT_H_
