// Starting one child process: vfork + exec, with the child's set-up done between the two using
// system calls only (no allocation, no locks), so it is safe in a multi-threaded server.
// Runs on the supervisor's helper thread, never on a loop thread.
#ifndef COTASK_SCHEDULER_PROCESS_INTERNAL_SPAWN_H_
#define COTASK_SCHEDULER_PROCESS_INTERNAL_SPAWN_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "scheduler/process/process_spec.h"

namespace cotask::process::internal {

struct Spawned {
  pid_t pid = -1;
  int pidfd = -1;      // readable when the child exits; waitid(P_PIDFD) reaps it
  int stdin_fd = -1;   // write end (non-blocking), -1 when there is no stdin input
  int stdout_fd = -1;  // read ends (non-blocking)
  int stderr_fd = -1;
};

// The child: its own process group (pgid == pid), the given environment only, cwd, rlimits,
// credentials, default signal dispositions and an empty signal mask, descriptors 0-2 only.
// Errors: INVALID_ARGUMENT for an empty argv; NOT_FOUND / PERMISSION_DENIED / FAILED_PRECONDITION
// naming the executable (or the cwd) when exec or the set-up fails in the child;
// INTERNAL/RESOURCE_EXHAUSTED when the server cannot create pipes or processes.
absl::StatusOr<Spawned> Spawn(const ProcessSpec& spec);

}  // namespace cotask::process::internal

#endif  // COTASK_SCHEDULER_PROCESS_INTERNAL_SPAWN_H_
