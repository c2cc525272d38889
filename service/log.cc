#include "service/log.h"

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cotask::service {
namespace {

std::atomic<LogFormat> log_format{LogFormat::kText};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// A JSON string literal (RFC 8259): quotes, backslashes and control characters escaped.
std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace

void SetLogFormat(LogFormat format) { log_format = format; }

std::string FormatLogLine(LogFormat format, LogLevel level, absl::string_view message,
                          const LogFields& fields) {
  const std::string time =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  if (format == LogFormat::kJson) {
    std::string line = absl::StrCat("{\"time\":", JsonString(time), ",\"level\":\"",
                                    LevelName(level), "\",\"msg\":", JsonString(message));
    for (const auto& [key, value] : fields) {
      absl::StrAppend(&line, ",", JsonString(key), ":", JsonString(value));
    }
    return line + "}";
  }
  std::string line = absl::StrCat(
      time, " cotaskd: ", level == LogLevel::kInfo ? "" : absl::StrCat(LevelName(level), ": "),
      message);
  for (const auto& [key, value] : fields) absl::StrAppend(&line, " ", key, "=", value);
  return line;
}

void Log(LogLevel level, absl::string_view message, const LogFields& fields) {
  const std::string line = FormatLogLine(log_format, level, message, fields) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);  // one write: lines never interleave
  std::fflush(stderr);
}

}  // namespace cotask::service
