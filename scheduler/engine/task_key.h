// TaskKey: the number a task's id spells. Ids are "t" and 14 hex digits of a strictly
// increasing count of microseconds (Engine::NewTaskKey), so keys sort as the ids do, compare
// without reading text, and take 8 bytes where an id's string takes 32. The engine keys its
// task table by them, and the event logs keep a child task's key instead of its id.
#ifndef COTASK_SCHEDULER_ENGINE_TASK_KEY_H_
#define COTASK_SCHEDULER_ENGINE_TASK_KEY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace cotask::engine {

using TaskKey = uint64_t;  // 0 is no task's

inline constexpr size_t kTaskIdSize = 15;  // of every id TaskIdOf makes

// The id a key spells.
std::string TaskIdOf(TaskKey key);
// The key `id` spells; none if `id` is not one TaskIdOf makes (so no task has it).
std::optional<TaskKey> TaskKeyOf(absl::string_view id);

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_TASK_KEY_H_
