// What to run and how: the input of ProcessSupervisor::Run.
#ifndef COTASK_SCHEDULER_PROCESS_PROCESS_SPEC_H_
#define COTASK_SCHEDULER_PROCESS_PROCESS_SPEC_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cotask::process {

// setrlimit(2) limits for the child; unset ones are inherited.
struct ResourceLimits {
  std::optional<uint64_t> cpu_seconds;          // RLIMIT_CPU
  std::optional<uint64_t> address_space_bytes;  // RLIMIT_AS
  std::optional<uint64_t> open_files;           // RLIMIT_NOFILE
  std::optional<uint64_t> file_size_bytes;      // RLIMIT_FSIZE
  std::optional<uint64_t> processes;            // RLIMIT_NPROC
  uint64_t core_bytes = 0;                      // RLIMIT_CORE: no core dumps by default
};

struct Credentials {
  uid_t uid;
  gid_t gid;
};

struct ProcessSpec {
  // argv[0] is the executable: an absolute path, run directly (never through a shell).
  std::vector<std::string> argv;
  // The child's whole environment, as NAME=value: nothing is inherited from the server.
  std::vector<std::string> env;
  // Working directory; empty: the server's.
  std::string cwd;
  // Written to the child's stdin, which is then closed.
  std::string stdin_bytes;
  ResourceLimits limits;
  // Set: the child drops to this uid/gid (and no supplementary groups) before exec.
  std::optional<Credentials> run_as;
  // After a cancellation's SIGTERM to the process group, how long before SIGKILL.
  std::chrono::milliseconds kill_grace{5000};
};

// How a process ended.
struct ExitStatus {
  bool signaled = false;  // killed by `signal`, else exited with `exit_code`
  int exit_code = 0;
  int signal = 0;
  bool success() const { return !signaled && exit_code == 0; }
};

enum class OutputStream { kStdout = 1, kStderr = 2 };

}  // namespace cotask::process

#endif  // COTASK_SCHEDULER_PROCESS_PROCESS_SPEC_H_
