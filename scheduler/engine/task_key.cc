#include "scheduler/engine/task_key.h"

namespace cotask::engine {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

}  // namespace

std::string TaskIdOf(TaskKey key) {
  // "t" and 14 hex digits (what StrFormat("t%014x") gives, without its parsing: once a task).
  std::string id(kTaskIdSize, '0');
  id[0] = 't';
  for (size_t i = id.size() - 1; i > 0 && key != 0; --i, key >>= 4) {
    id[i] = kHexDigits[key & 0xf];
  }
  return id;
}

std::optional<TaskKey> TaskKeyOf(absl::string_view id) {
  if (id.size() != kTaskIdSize || id[0] != 't') return std::nullopt;
  TaskKey key = 0;
  for (const char c : id.substr(1)) {
    TaskKey digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    key = key << 4 | digit;
  }
  return key;
}

}  // namespace cotask::engine
