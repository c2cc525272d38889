#include "scheduler/process/process_supervisor.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "scheduler/process/internal/spawn.h"
#include "scheduler/runtime/check.h"

namespace cotask::process {

namespace {

using Clock = std::chrono::steady_clock;

// How long the pipes may stay open after the process has exited and its group was killed
// (a descendant that left the group can hold them); then they are closed.
constexpr auto kLinger = std::chrono::milliseconds(1000);
// How often a supervisor that adopts orphans looks for them.
constexpr auto kOrphanScan = std::chrono::milliseconds(500);
constexpr size_t kReadChunk = size_t{64} * 1024;
// Output read but not yet handed to the callback, per process. Past it the helper stops reading
// and the child blocks on its full pipe until the loop catches up.
constexpr size_t kMaxInFlight = size_t{1} << 20;

// epoll data: (run id << 3) | what.
enum What : uint64_t { kWake = 0, kStdout = 1, kStderr = 2, kStdin = 3, kExit = 4 };
uint64_t Key(uint64_t id, What what) { return (id << 3) | what; }

ExitStatus FromSiginfo(const siginfo_t& info) {
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.exit_code = info.si_status;
  } else {
    status.signaled = true;
    status.signal = info.si_status;
  }
  return status;
}

}  // namespace

// Loop-thread state, shared with the callbacks the helper posts (they may outlive the
// supervisor in the loop's queue; `alive` tells them).
struct ProcessSupervisor::LoopSide {
  bool alive = true;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, RunAwaiter*> runs;
};

class ProcessSupervisor::RunAwaiter final : public runtime::internal::CancelHook {
 public:
  RunAwaiter(ProcessSupervisor& supervisor, ProcessSpec spec, OutputCallback on_output)
      : supervisor_(&supervisor), spec_(std::move(spec)), on_output_(std::move(on_output)) {}
  RunAwaiter(const RunAwaiter&) = delete;
  RunAwaiter& operator=(const RunAwaiter&) = delete;
  ~RunAwaiter();

  bool await_ready() {
    task_ = &runtime::internal::CurrentTaskOrDie("ProcessSupervisor::Run");
    cancelled_before_start_ = task_->TakePendingCancel();
    return cancelled_before_start_;
  }
  void await_suspend(std::coroutine_handle<> at);
  absl::StatusOr<ExitStatus> await_resume() {
    if (cancelled_before_start_ || terminated_) return task_->TakeCancelDelivery();
    return std::move(result_);
  }

  // Cancellation: terminate the process group and keep waiting until it has been reaped.
  void OnCancel() override;

  // From the helper, through the loop.
  void OnOutput(OutputStream stream, absl::string_view bytes);
  void OnExit(absl::StatusOr<ExitStatus> result);

 private:
  ProcessSupervisor* supervisor_;
  ProcessSpec spec_;
  OutputCallback on_output_;
  runtime::internal::TaskState* task_ = nullptr;
  uint64_t id_ = 0;
  absl::StatusOr<ExitStatus> result_;
  bool cancelled_before_start_ = false;
  bool terminated_ = false;
  bool finished_ = false;
};

// The helper thread and everything it owns.
class ProcessSupervisor::Helper {
 public:
  Helper(runtime::EventLoop& loop, std::shared_ptr<LoopSide> side, bool adopt_orphans);
  ~Helper();

  // From the loop thread.
  void Spawn(uint64_t id, ProcessSpec spec) { Send({Command::kSpawn, id, std::move(spec)}); }
  void Terminate(uint64_t id) { Send({Command::kTerminate, id, {}}); }
  void Abandon(uint64_t id) { Send({Command::kAbandon, id, {}}); }
  void Consumed(uint64_t id, size_t bytes) { Send({Command::kConsumed, id, {}, bytes}); }

 private:
  struct Command {
    enum Kind { kSpawn, kTerminate, kAbandon, kConsumed, kStop } kind;
    uint64_t id;
    ProcessSpec spec;
    size_t bytes = 0;  // kConsumed
  };
  struct Child {
    uint64_t id = 0;
    internal::Spawned process;
    std::string stdin_bytes;
    size_t stdin_written = 0;
    std::chrono::milliseconds kill_grace{0};
    std::optional<Clock::time_point> kill_at;
    std::optional<Clock::time_point> linger_until;
    bool exited = false;
    bool abandoned = false;  // its Run is gone: reap it, report nothing
    size_t in_flight = 0;    // posted to the loop, not yet consumed
    bool paused = false;     // output not watched while in_flight is at the bound
    ExitStatus status;
  };

  void Send(Command command);
  void Main();
  bool TakeCommands();  // false on kStop
  void StartChild(uint64_t id, ProcessSpec spec);
  void Watch(int fd, uint32_t events, uint64_t key);
  void CloseFd(int& fd);
  void ReadOutput(Child& child, OutputStream stream);
  void SetOutputWatched(Child& child, bool watched);
  void WriteInput(Child& child);
  void Reap(Child& child);
  void FinishIfDone(Child& child);
  void Finish(Child& child);
  int NextTimeoutMs() const;
  void CheckDeadlines();
  void KillAll();
  void ReapOrphans();
  void Post(uint64_t id, absl::AnyInvocable<void(RunAwaiter&) &&> fn);

  runtime::EventLoop* loop_;
  std::shared_ptr<LoopSide> side_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::mutex mutex_;
  std::deque<Command> commands_;                  // guarded by mutex_
  std::unordered_map<uint64_t, Child> children_;  // helper thread only
  bool adopt_orphans_;
  Clock::time_point next_orphan_scan_{};
  std::thread thread_;
};

ProcessSupervisor::Helper::Helper(runtime::EventLoop& loop, std::shared_ptr<LoopSide> side,
                                  bool adopt_orphans)
    : loop_(&loop), side_(std::move(side)), adopt_orphans_(adopt_orphans) {
  if (adopt_orphans_) {
    COTASK_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "cannot become a child subreaper");
  }
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  COTASK_CHECK(epoll_fd_ >= 0 && wake_fd_ >= 0, "cannot create the process helper's epoll");
  Watch(wake_fd_, EPOLLIN, Key(0, kWake));
  thread_ = std::thread([this] { Main(); });
  pthread_setname_np(thread_.native_handle(), "cotask-procs");
}

ProcessSupervisor::Helper::~Helper() {
  Send({Command::kStop, 0, {}});
  thread_.join();
  close(wake_fd_);
  close(epoll_fd_);
}

void ProcessSupervisor::Helper::Send(Command command) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands_.push_back(std::move(command));
  }
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

void ProcessSupervisor::Helper::Watch(int fd, uint32_t events, uint64_t key) {
  epoll_event event = {};
  event.events = events;
  event.data.u64 = key;
  COTASK_CHECK(epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) == 0, "epoll_ctl ADD failed");
}

void ProcessSupervisor::Helper::CloseFd(int& fd) {
  if (fd < 0) return;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  fd = -1;
}

void ProcessSupervisor::Helper::Post(uint64_t id, absl::AnyInvocable<void(RunAwaiter&) &&> fn) {
  loop_->Post([side = side_, id, fn = std::move(fn)]() mutable {
    if (!side->alive) return;
    auto it = side->runs.find(id);
    if (it != side->runs.end()) std::move(fn)(*it->second);
  });
}

void ProcessSupervisor::Helper::Main() {
  epoll_event events[64];
  while (true) {
    int n = epoll_wait(epoll_fd_, events, 64, NextTimeoutMs());
    if (n < 0 && errno != EINTR) {
      COTASK_CHECK(false, "epoll_wait failed in the process helper");
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      const uint64_t id = key >> 3;
      const auto what = static_cast<What>(key & 7);
      if (what == kWake) {
        uint64_t count = 0;
        ssize_t ignored = read(wake_fd_, &count, sizeof(count));
        (void)ignored;
        if (!TakeCommands()) {
          KillAll();
          return;
        }
        continue;
      }
      auto it = children_.find(id);
      if (it == children_.end()) continue;  // finished earlier in this batch
      Child& child = it->second;
      switch (what) {
        case kStdout:
          ReadOutput(child, OutputStream::kStdout);
          break;
        case kStderr:
          ReadOutput(child, OutputStream::kStderr);
          break;
        case kStdin:
          WriteInput(child);
          break;
        case kExit:
          Reap(child);
          break;
        case kWake:
          break;
      }
    }
    CheckDeadlines();
    if (adopt_orphans_ && Clock::now() >= next_orphan_scan_) {
      ReapOrphans();
      next_orphan_scan_ = Clock::now() + kOrphanScan;
    }
  }
}

bool ProcessSupervisor::Helper::TakeCommands() {
  std::deque<Command> commands;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    commands.swap(commands_);
  }
  for (Command& command : commands) {
    if (command.kind == Command::kStop) return false;
    if (command.kind == Command::kSpawn) {
      StartChild(command.id, std::move(command.spec));
      continue;
    }
    auto it = children_.find(command.id);
    if (it == children_.end()) continue;
    Child& child = it->second;
    if (command.kind == Command::kConsumed) {
      child.in_flight -= std::min(child.in_flight, command.bytes);
      if (child.paused && child.in_flight < kMaxInFlight / 2) SetOutputWatched(child, true);
      continue;
    }
    if (child.exited) continue;
    if (command.kind == Command::kAbandon) {
      child.abandoned = true;
      kill(-child.process.pid, SIGKILL);
      if (child.paused) SetOutputWatched(child, true);  // nobody reads: drain and discard
    } else if (!child.kill_at.has_value()) {
      kill(-child.process.pid, child.kill_grace.count() > 0 ? SIGTERM : SIGKILL);
      child.kill_at = Clock::now() + child.kill_grace;
    }
  }
  return true;
}

void ProcessSupervisor::Helper::StartChild(uint64_t id, ProcessSpec spec) {
  absl::StatusOr<internal::Spawned> spawned = internal::Spawn(spec);
  if (!spawned.ok()) {
    // Plain data across threads: an absl::Status's reference count is released inside
    // Debian's uninstrumented Abseil, which ThreadSanitizer cannot see.
    Post(id, [code = spawned.status().code(), message = std::string(spawned.status().message())](
                 RunAwaiter& run) { run.OnExit(absl::Status(code, message)); });
    return;
  }
  Child& child = children_[id];
  child.id = id;
  child.process = *spawned;
  child.stdin_bytes = std::move(spec.stdin_bytes);
  child.kill_grace = spec.kill_grace;
  Watch(child.process.stdout_fd, EPOLLIN, Key(id, kStdout));
  Watch(child.process.stderr_fd, EPOLLIN, Key(id, kStderr));
  if (child.process.stdin_fd >= 0) Watch(child.process.stdin_fd, EPOLLOUT, Key(id, kStdin));
  Watch(child.process.pidfd, EPOLLIN, Key(id, kExit));
}

void ProcessSupervisor::Helper::ReadOutput(Child& child, OutputStream stream) {
  int& fd = stream == OutputStream::kStdout ? child.process.stdout_fd : child.process.stderr_fd;
  while (fd >= 0) {
    if (!child.abandoned && child.in_flight >= kMaxInFlight) {
      SetOutputWatched(child, false);
      return;
    }
    std::string chunk(kReadChunk, '\0');
    ssize_t n = read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      CloseFd(fd);  // end of stream (or an error, which ends it too)
      break;
    }
    chunk.resize(static_cast<size_t>(n));
    if (!child.abandoned) {
      child.in_flight += chunk.size();
      Post(child.id, [stream, chunk = std::move(chunk)](RunAwaiter& run) mutable {
        run.OnOutput(stream, chunk);
      });
    }
  }
  FinishIfDone(child);
}

void ProcessSupervisor::Helper::SetOutputWatched(Child& child, bool watched) {
  child.paused = !watched;
  for (auto [fd, what] :
       {std::pair{child.process.stdout_fd, kStdout}, std::pair{child.process.stderr_fd, kStderr}}) {
    if (fd < 0) continue;
    epoll_event event = {};
    event.events = watched ? static_cast<uint32_t>(EPOLLIN) : 0U;
    event.data.u64 = Key(child.id, what);
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
  }
  // Waiting for the loop is not lingering: the pipes get their full time once reading resumes.
  if (watched && child.exited) child.linger_until = Clock::now() + kLinger;
}

void ProcessSupervisor::Helper::WriteInput(Child& child) {
  int& fd = child.process.stdin_fd;
  while (fd >= 0 && child.stdin_written < child.stdin_bytes.size()) {
    ssize_t n = write(fd, child.stdin_bytes.data() + child.stdin_written,
                      child.stdin_bytes.size() - child.stdin_written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) break;  // EPIPE: the child does not read its input
    child.stdin_written += static_cast<size_t>(n);
  }
  CloseFd(fd);
  child.stdin_bytes.clear();
}

void ProcessSupervisor::Helper::Reap(Child& child) {
  // The leader is a zombie now and still holds its pid, so its process group id cannot have
  // been reused: kill what is left of the group, then reap.
  kill(-child.process.pid, SIGKILL);
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), child.process.pidfd, &info, WEXITED) != 0) {
    info.si_code = CLD_KILLED;
    info.si_status = SIGKILL;
  }
  child.status = FromSiginfo(info);
  child.exited = true;
  CloseFd(child.process.pidfd);
  CloseFd(child.process.stdin_fd);
  child.linger_until = Clock::now() + kLinger;
  FinishIfDone(child);
}

void ProcessSupervisor::Helper::FinishIfDone(Child& child) {
  if (child.exited && child.process.stdout_fd < 0 && child.process.stderr_fd < 0) Finish(child);
}

void ProcessSupervisor::Helper::Finish(Child& child) {
  CloseFd(child.process.stdout_fd);
  CloseFd(child.process.stderr_fd);
  if (!child.abandoned) {
    Post(child.id, [status = child.status](RunAwaiter& run) { run.OnExit(status); });
  }
  children_.erase(child.id);
}

int ProcessSupervisor::Helper::NextTimeoutMs() const {
  std::optional<Clock::time_point> next;
  for (const auto& [id, child] : children_) {
    for (const auto& t : {child.exited ? std::nullopt : child.kill_at,
                          child.paused ? std::nullopt : child.linger_until}) {
      if (t.has_value() && (!next.has_value() || *t < *next)) next = t;
    }
  }
  if (adopt_orphans_ && (!next.has_value() || next_orphan_scan_ < *next)) {
    next = next_orphan_scan_;
  }
  if (!next.has_value()) return -1;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

void ProcessSupervisor::Helper::CheckDeadlines() {
  const auto now = Clock::now();
  std::vector<uint64_t> lingered;
  for (auto& [id, child] : children_) {
    if (!child.exited && child.kill_at.has_value() && *child.kill_at <= now) {
      kill(-child.process.pid, SIGKILL);
      child.kill_at = Clock::time_point::max();
    }
    if (!child.paused && child.linger_until.has_value() && *child.linger_until <= now) {
      lingered.push_back(id);
    }
  }
  for (uint64_t id : lingered) {
    // What is already in the pipes still counts (reading may finish the child, or pause it at
    // the in-flight bound); after that, a descendant holding the pipes open is not waited for.
    for (OutputStream stream : {OutputStream::kStdout, OutputStream::kStderr}) {
      if (auto it = children_.find(id); it != children_.end()) ReadOutput(it->second, stream);
    }
    // Paused: it finishes after the loop has caught up (resuming restarts the linger).
    if (auto it = children_.find(id); it != children_.end() && !it->second.paused) {
      Finish(it->second);
    }
  }
}

void ProcessSupervisor::Helper::ReapOrphans() {
  std::unordered_set<pid_t> started;
  std::unordered_set<pid_t> running_groups;  // a started child's pid is its group's id
  for (const auto& [id, child] : children_) {
    started.insert(child.process.pid);
    if (!child.exited) running_groups.insert(child.process.pid);
  }
  // The children of every thread of this process (orphans are reparented to one of them).
  std::vector<pid_t> pids;
  if (DIR* tasks = opendir("/proc/self/task"); tasks != nullptr) {
    while (dirent* entry = readdir(tasks)) {
      if (entry->d_name[0] == '.') continue;
      std::ifstream list(std::string("/proc/self/task/") + entry->d_name + "/children");
      pid_t pid;
      while (list >> pid) pids.push_back(pid);
    }
    closedir(tasks);
  }
  for (pid_t pid : pids) {
    if (started.count(pid) != 0) continue;
    // Until it is reaped, an orphan's pid cannot be reused: kill and getpgid reach it.
    const pid_t group = getpgid(pid);
    if (group >= 0 && running_groups.count(group) != 0) continue;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, WNOHANG);  // not dead yet: the next scan reaps it
  }
}

void ProcessSupervisor::Helper::KillAll() {
  for (auto& [id, child] : children_) {
    if (!child.exited) {
      kill(-child.process.pid, SIGKILL);
      siginfo_t info = {};
      waitid(static_cast<idtype_t>(P_PIDFD), child.process.pidfd, &info, WEXITED);
    }
    for (int* fd : {&child.process.pidfd, &child.process.stdin_fd, &child.process.stdout_fd,
                    &child.process.stderr_fd}) {
      CloseFd(*fd);
    }
  }
  children_.clear();
  if (adopt_orphans_) ReapOrphans();  // what the kills just made zombies
}

ProcessSupervisor::RunAwaiter::~RunAwaiter() {
  // Destroyed before the process ended (the loop shut down under it): stop and forget it.
  if (id_ != 0 && !finished_) {
    supervisor_->loop_side_->runs.erase(id_);
    supervisor_->helper_->Abandon(id_);
  }
}

void ProcessSupervisor::RunAwaiter::await_suspend(std::coroutine_handle<> at) {
  LoopSide& side = *supervisor_->loop_side_;
  id_ = side.next_id++;
  side.runs[id_] = this;
  supervisor_->helper_->Spawn(id_, std::move(spec_));
  task_->Suspend(at, this);
}

void ProcessSupervisor::RunAwaiter::OnOutput(OutputStream stream, absl::string_view bytes) {
  if (on_output_) on_output_(stream, bytes);
  supervisor_->helper_->Consumed(id_, bytes.size());
}

void ProcessSupervisor::RunAwaiter::OnCancel() {
  terminated_ = true;
  supervisor_->helper_->Terminate(id_);
}

void ProcessSupervisor::RunAwaiter::OnExit(absl::StatusOr<ExitStatus> result) {
  finished_ = true;
  supervisor_->loop_side_->runs.erase(id_);
  result_ = std::move(result);
  if (terminated_) {
    task_->WakeAfterCancel();
  } else {
    task_->Wake();
  }
}

ProcessSupervisor::ProcessSupervisor(runtime::EventLoop& loop, SupervisorOptions options)
    : loop_side_(std::make_shared<LoopSide>()),
      helper_(std::make_unique<Helper>(loop, loop_side_, options.adopt_orphans)) {}

ProcessSupervisor::~ProcessSupervisor() {
  COTASK_CHECK(loop_side_->runs.empty(), "ProcessSupervisor destroyed while a Run is pending");
  loop_side_->alive = false;
  helper_.reset();
}

runtime::Task<ExitStatus> ProcessSupervisor::Run(ProcessSpec spec, OutputCallback on_output) {
  co_return co_await RunAwaiter(*this, std::move(spec), std::move(on_output));
}

}  // namespace cotask::process
