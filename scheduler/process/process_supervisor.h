// ProcessSupervisor: runs subprocesses for coroutines on an EventLoop.
//
//   ProcessSupervisor processes(loop);
//   absl::StatusOr<ExitStatus> exit = co_await processes.Run(spec,
//       [](OutputStream stream, absl::string_view bytes) { ... });
//
// Each process gets its own process group, the environment given and nothing else, descriptors
// 0-2 only, its rlimits and (optionally) an unprivileged uid; see internal/spawn.h. Its stdout
// and stderr reach the callback on the loop thread as they come, in order, all of it before
// Run returns. At most 1 MiB per process is read ahead of the callback: past that the child
// blocks on its full pipe until the loop catches up, so a fast writer cannot fill memory. When the
// process exits, whatever is left of its process group is killed, so no background child outlives
// it.
//
// Cancelling the task awaiting Run sends SIGTERM to the whole process group and SIGKILL after
// spec.kill_grace; Run still returns only once the process has been reaped, with CANCELLED.
//
// Orphans (options.adopt_orphans, for a server that owns every child of its process, such as
// cotaskd, above all as a container's PID 1): the process becomes a child subreaper
// (PR_SET_CHILD_SUBREAPER), so descendants whose parent dies are reparented to it instead of
// escaping to init, and twice a second the helper looks at its children it did not start: one in
// the process group of a process still running is left to that process's end (which kills the
// group); any other (it left its group with setsid or setpgid, or outlived it) is killed and
// reaped. No zombie piles up, and no descendant outlives its task by leaving its group.
//
// Threads: one helper thread does all blocking work (vfork/exec, reading pipes, reaping with
// pidfd under epoll) and posts what happens into the loop; the loop thread never blocks.
// Construct, call Run and destroy on the loop thread. Destroy it only once no Run is pending
// (e.g. after Runner::Close): the destructor kills and reaps any process still running.
#ifndef COTASK_SCHEDULER_PROCESS_PROCESS_SUPERVISOR_H_
#define COTASK_SCHEDULER_PROCESS_PROCESS_SUPERVISOR_H_

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/process/process_spec.h"
#include "scheduler/runtime/event_loop.h"
#include "scheduler/runtime/task.h"

namespace cotask::process {

using OutputCallback = absl::AnyInvocable<void(OutputStream, absl::string_view)>;

struct SupervisorOptions {
  // See the class comment. Only for a process where nothing else starts children: the
  // supervisor reaps every child it did not start.
  bool adopt_orphans = false;
};

class ProcessSupervisor {
 public:
  explicit ProcessSupervisor(runtime::EventLoop& loop, SupervisorOptions options = {});
  ProcessSupervisor(const ProcessSupervisor&) = delete;
  ProcessSupervisor& operator=(const ProcessSupervisor&) = delete;
  ~ProcessSupervisor();

  // Runs one process to its end. The outcome is its ExitStatus (whatever the exit code), the
  // spawn error (see internal::Spawn), or CANCELLED.
  runtime::Task<ExitStatus> Run(ProcessSpec spec, OutputCallback on_output);

 private:
  class RunAwaiter;
  struct LoopSide;
  class Helper;

  std::shared_ptr<LoopSide> loop_side_;
  std::unique_ptr<Helper> helper_;
};

}  // namespace cotask::process

#endif  // COTASK_SCHEDULER_PROCESS_PROCESS_SUPERVISOR_H_
