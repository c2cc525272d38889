// A child process for tests: started with posix_spawn, its stderr captured through a pipe,
// signalled and reaped by the test that owns it (the destructor kills and reaps it).
#ifndef COTASK_TESTS_SUBPROCESS_H_
#define COTASK_TESTS_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cotask::testing {

class Subprocess {
 public:
  // env: extra NAME=value entries on top of this process's environment.
  static absl::StatusOr<Subprocess> Start(const std::vector<std::string>& argv,
                                          const std::vector<std::string>& env = {});
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&&) = delete;
  ~Subprocess();

  // Reads stderr until `marker` appears; returns the text from the start of stderr through
  // the end of the line holding the marker. DEADLINE_EXCEEDED or FAILED_PRECONDITION (the
  // stream ended) otherwise.
  absl::StatusOr<std::string> WaitForStderr(const std::string& marker,
                                            std::chrono::milliseconds timeout);
  void Signal(int signal_number);
  // The exit status as from waitpid, or DEADLINE_EXCEEDED. Reads the rest of stderr.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  const std::string& stderr_text() const { return stderr_; }
  pid_t pid() const { return pid_; }

 private:
  Subprocess(pid_t pid, int stderr_fd) : pid_(pid), stderr_fd_(stderr_fd) {}
  // Reads what is available within `timeout`; false at end of stream.
  bool ReadSome(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  std::string stderr_;
  std::optional<int> exit_status_;
};

}  // namespace cotask::testing

#endif  // COTASK_TESTS_SUBPROCESS_H_
