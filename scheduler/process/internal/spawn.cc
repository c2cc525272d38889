#include "scheduler/process/internal/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace cotask::process::internal {
namespace {

// What failed in the child, sent back through a close-on-exec pipe (nothing arrives when the
// exec succeeds).
enum class Stage : int {
  kProcessGroup = 1,
  kSignals,
  kDescriptors,
  kCwd,
  kLimits,
  kCredentials,
  kExec
};
struct ChildError {
  Stage stage;
  int error;
};

struct Limit {
  int resource;
  rlimit value;
};

// Everything the child needs, prepared before vfork: the child allocates nothing.
struct ChildPlan {
  char* const* argv;
  char* const* envp;
  const char* cwd;  // null: stay
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  int error_fd;
  std::array<Limit, 6> limits;
  int limit_count;
  bool drop_credentials;
  uid_t uid;
  gid_t gid;
};

[[noreturn]] void Fail(const ChildPlan& plan, Stage stage) {
  ChildError error{stage, errno};
  ssize_t ignored = write(plan.error_fd, &error, sizeof(error));
  (void)ignored;
  _exit(127);
}

// Runs in the vfork child, on the parent's memory: system calls only.
[[noreturn]] void RunChild(const ChildPlan& plan) {
  if (setpgid(0, 0) != 0) Fail(plan, Stage::kProcessGroup);
  // Default dispositions (the server may ignore SIGPIPE), then an empty mask (the server
  // blocks SIGTERM/SIGINT/SIGHUP to take them with sigwait).
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &default_action, nullptr);
  }
  sigset_t empty;
  sigemptyset(&empty);
  if (sigprocmask(SIG_SETMASK, &empty, nullptr) != 0) Fail(plan, Stage::kSignals);
  if (dup2(plan.stdin_fd, STDIN_FILENO) < 0 || dup2(plan.stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(plan.stderr_fd, STDERR_FILENO) < 0) {
    Fail(plan, Stage::kDescriptors);
  }
  // Every other descriptor closes at exec (the error pipe stays open until then).
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) Fail(plan, Stage::kDescriptors);
  if (plan.cwd != nullptr && chdir(plan.cwd) != 0) Fail(plan, Stage::kCwd);
  for (int i = 0; i < plan.limit_count; ++i) {
    if (setrlimit(plan.limits[i].resource, &plan.limits[i].value) != 0) {
      Fail(plan, Stage::kLimits);
    }
  }
  if (plan.drop_credentials) {
    if (setgroups(0, nullptr) != 0 || setgid(plan.gid) != 0 || setuid(plan.uid) != 0) {
      Fail(plan, Stage::kCredentials);
    }
  }
  execve(plan.argv[0], plan.argv, plan.envp);
  Fail(plan, Stage::kExec);
}

absl::Status ChildFailure(const ProcessSpec& spec, const ChildError& e) {
  const std::string reason = std::strerror(e.error);
  switch (e.stage) {
    case Stage::kExec: {
      std::string message = absl::StrCat("cannot execute ", spec.argv[0], ": ", reason);
      if (e.error == ENOENT) return absl::NotFoundError(message);
      if (e.error == EACCES || e.error == EPERM) return absl::PermissionDeniedError(message);
      return absl::FailedPreconditionError(message);
    }
    case Stage::kCwd: {
      std::string message = absl::StrCat("cannot change to cwd ", spec.cwd, ": ", reason);
      if (e.error == ENOENT) return absl::NotFoundError(message);
      if (e.error == EACCES) return absl::PermissionDeniedError(message);
      return absl::FailedPreconditionError(message);
    }
    case Stage::kLimits:
      return absl::InvalidArgumentError(absl::StrCat("cannot set a resource limit: ", reason));
    case Stage::kCredentials:
      return absl::PermissionDeniedError(absl::StrCat("cannot switch to uid ", spec.run_as->uid,
                                                      " gid ", spec.run_as->gid, ": ", reason));
    default:
      return absl::InternalError(absl::StrCat("setting up the child failed: ", reason));
  }
}

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// A pipe whose ends are close-on-exec; the child's end is dup2'ed to 0, 1 or 2.
absl::Status MakePipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// glibc 2.36's <sys/pidfd.h> declares pidfd_open without extern "C"; use the system call.
int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

}  // namespace

absl::StatusOr<Spawned> Spawn(const ProcessSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return absl::InvalidArgumentError("argv is empty: argv[0] must name the executable");
  }
  std::vector<char*> argv;
  argv.reserve(spec.argv.size() + 1);
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(spec.env.size() + 1);
  for (const std::string& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  ChildPlan plan = {};
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
  auto add_limit = [&](int resource, uint64_t value) {
    plan.limits[plan.limit_count++] = {resource, {value, value}};
  };
  const ResourceLimits& l = spec.limits;
  if (l.cpu_seconds) add_limit(RLIMIT_CPU, *l.cpu_seconds);
  if (l.address_space_bytes) add_limit(RLIMIT_AS, *l.address_space_bytes);
  if (l.open_files) add_limit(RLIMIT_NOFILE, *l.open_files);
  if (l.file_size_bytes) add_limit(RLIMIT_FSIZE, *l.file_size_bytes);
  if (l.processes) add_limit(RLIMIT_NPROC, *l.processes);
  add_limit(RLIMIT_CORE, l.core_bytes);
  if (spec.run_as.has_value()) {
    plan.drop_credentials = true;
    plan.uid = spec.run_as->uid;
    plan.gid = spec.run_as->gid;
  }

  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, errors[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {in, out, err, errors}) {
      CloseIfOpen(p[0]);
      CloseIfOpen(p[1]);
    }
  };
  absl::Status status = absl::OkStatus();
  if (spec.stdin_bytes.empty()) {
    in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in[0] < 0) status = absl::InternalError("cannot open /dev/null");
  } else {
    status = MakePipe(in);
  }
  if (status.ok()) status = MakePipe(out);
  if (status.ok()) status = MakePipe(err);
  if (status.ok()) status = MakePipe(errors);
  if (!status.ok()) {
    close_all();
    return status;
  }
  plan.stdin_fd = in[0];
  plan.stdout_fd = out[1];
  plan.stderr_fd = err[1];
  plan.error_fd = errors[1];

  pid_t pid = vfork();
  if (pid == 0) RunChild(plan);
  if (pid < 0) {
    int error = errno;
    close_all();
    return absl::ResourceExhaustedError(absl::StrCat("vfork: ", std::strerror(error)));
  }
  // The child has exec'd or failed: the parent resumes only then.
  CloseIfOpen(in[0]);
  CloseIfOpen(out[1]);
  CloseIfOpen(err[1]);
  CloseIfOpen(errors[1]);
  ChildError child_error{};
  ssize_t n;
  do {
    n = read(errors[0], &child_error, sizeof(child_error));
  } while (n < 0 && errno == EINTR);
  CloseIfOpen(errors[0]);
  if (n == static_cast<ssize_t>(sizeof(child_error))) {
    int ignored = 0;
    waitpid(pid, &ignored, 0);
    close_all();
    return ChildFailure(spec, child_error);
  }

  Spawned spawned;
  spawned.pid = pid;
  spawned.pidfd = PidfdOpen(pid);
  if (spawned.pidfd < 0) {
    int error = errno;
    kill(-pid, SIGKILL);
    int ignored = 0;
    waitpid(pid, &ignored, 0);
    close_all();
    return absl::ResourceExhaustedError(absl::StrCat("pidfd_open: ", std::strerror(error)));
  }
  spawned.stdin_fd = in[1];
  spawned.stdout_fd = out[0];
  spawned.stderr_fd = err[0];
  for (int fd : {spawned.stdin_fd, spawned.stdout_fd, spawned.stderr_fd}) {
    if (fd >= 0) SetNonBlocking(fd);
  }
  return spawned;
}

}  // namespace cotask::process::internal
