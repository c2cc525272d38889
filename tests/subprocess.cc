#include "tests/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cotask::testing {

absl::StatusOr<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                             const std::vector<std::string>& env) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  for (const auto& e : env) env_strings.push_back(e);
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::InternalError(absl::StrCat("posix_spawn ", argv[0], ": ", std::strerror(rc)));
  }
  return Subprocess(pid, fds[0]);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      stderr_fd_(std::exchange(other.stderr_fd_, -1)),
      stderr_(std::move(other.stderr_)),
      exit_status_(other.exit_status_) {}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_status_.has_value()) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

bool Subprocess::ReadSome(std::chrono::milliseconds timeout) {
  if (stderr_fd_ < 0) return false;
  pollfd p{stderr_fd_, POLLIN, 0};
  int ready = poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready <= 0) return true;
  char buffer[4096];
  ssize_t n = read(stderr_fd_, buffer, sizeof(buffer));
  if (n <= 0) {
    close(stderr_fd_);
    stderr_fd_ = -1;
    return false;
  }
  stderr_.append(buffer, static_cast<size_t>(n));
  return true;
}

absl::StatusOr<std::string> Subprocess::WaitForStderr(const std::string& marker,
                                                      std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    size_t at = stderr_.find(marker);
    if (at != std::string::npos) {
      size_t end = stderr_.find('\n', at);
      if (end != std::string::npos) return stderr_.substr(0, end + 1);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("no \"", marker, "\" on stderr; it says: ", stderr_));
    }
    if (!ReadSome(left)) {
      return absl::FailedPreconditionError(
          absl::StrCat("stderr ended without \"", marker, "\"; it says: ", stderr_));
    }
  }
}

void Subprocess::Signal(int signal_number) {
  if (pid_ > 0 && !exit_status_.has_value()) kill(pid_, signal_number);
}

absl::StatusOr<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exit_status_.has_value()) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = status;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " still running"));
    }
    if (!ReadSome(std::chrono::milliseconds(10))) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  while (ReadSome(std::chrono::milliseconds(100))) {
  }
  return *exit_status_;
}

}  // namespace cotask::testing
