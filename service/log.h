// cotaskd's log: one line per event worth an operator's attention, on stderr, as text
//   2026-11-24T08:34:23.783Z cotaskd: listening on 127.0.0.1:50051; ...
// or, with --log_format=json, as JSON lines
//   {"time":"2026-11-24T08:34:23.783Z","level":"info","msg":"listening on ...","address":"..."}
// Fields are extra key/value pairs (text: appended as key=value). Thread-safe.
#ifndef COTASK_SERVICE_LOG_H_
#define COTASK_SERVICE_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace cotask::service {

enum class LogFormat { kText, kJson };
enum class LogLevel { kInfo, kWarning, kError };

using LogFields = std::vector<std::pair<std::string, std::string>>;

// For the whole process (set once at start; text until then).
void SetLogFormat(LogFormat format);
void Log(LogLevel level, absl::string_view message, const LogFields& fields = {});

// The line Log writes (without the newline), for tests.
std::string FormatLogLine(LogFormat format, LogLevel level, absl::string_view message,
                          const LogFields& fields);

}  // namespace cotask::service

#endif  // COTASK_SERVICE_LOG_H_
