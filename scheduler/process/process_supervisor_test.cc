// Real child processes (/bin/sh, /bin/cat, /usr/bin/env, ...) run through ProcessSupervisor.
#include "scheduler/process/process_supervisor.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/runtime/runner.h"
#include "scheduler/runtime/sleep.h"
#include "scheduler/runtime/status_macros.h"
#include "tests/status_matchers.h"

namespace cotask::process {
namespace {

using ::cotask::testing::StatusIs;
using runtime::CreateTask;
using runtime::Runner;
using runtime::Task;
using runtime::TaskHandle;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct Captured {
  std::string out;
  std::string err;
  std::vector<std::string> order;  // "out"/"err" per chunk, to check ordering
  absl::StatusOr<ExitStatus> exit = absl::UnknownError("not run");
};

ProcessSpec Shell(std::string script) {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", std::move(script)};
  spec.env = {"PATH=/usr/bin:/bin"};
  return spec;
}

std::string TempPath(const char* name) {
  return absl::StrCat(::testing::TempDir(), "/", name, "-", getpid());
}

void WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  std::ofstream(path) << content;
  chmod(path.c_str(), mode);
}

class ProcessSupervisorTest : public ::testing::Test {
 protected:
  // Runs the process to its end inside a task and captures everything.
  Captured RunToEnd(ProcessSpec spec) {
    Captured c;
    auto main = [&]() -> Task<void> {
      c.exit = co_await supervisor_.Run(std::move(spec), Capture(c));
      co_return absl::OkStatus();
    };
    EXPECT_TRUE(runner_.Run(main()).ok());
    return c;
  }
  static OutputCallback Capture(Captured& c) {
    return [&c](OutputStream stream, absl::string_view bytes) {
      (stream == OutputStream::kStdout ? c.out : c.err).append(bytes.data(), bytes.size());
      c.order.push_back(stream == OutputStream::kStdout ? "out" : "err");
    };
  }

  Runner runner_;
  ProcessSupervisor supervisor_{runner_.loop()};
};

TEST_F(ProcessSupervisorTest, StreamsOutputAndReportsTheExitCode) {
  Captured ok = RunToEnd(Shell("echo hello; echo oops >&2"));
  ASSERT_TRUE(ok.exit.ok()) << ok.exit.status();
  EXPECT_TRUE(ok.exit->success());
  EXPECT_EQ(ok.out, "hello\n");
  EXPECT_EQ(ok.err, "oops\n");

  Captured failed = RunToEnd(Shell("exit 3"));
  ASSERT_TRUE(failed.exit.ok());
  EXPECT_FALSE(failed.exit->success());
  EXPECT_FALSE(failed.exit->signaled);
  EXPECT_EQ(failed.exit->exit_code, 3);

  Captured killed = RunToEnd(Shell("kill -SEGV $$"));
  ASSERT_TRUE(killed.exit.ok());
  EXPECT_TRUE(killed.exit->signaled);
  EXPECT_EQ(killed.exit->signal, SIGSEGV);
}

TEST_F(ProcessSupervisorTest, AllOutputArrivesInOrderBeforeTheResult) {
  // 20,000 numbered lines: several 64 KiB chunks.
  Captured c = RunToEnd(Shell("i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done"));
  ASSERT_TRUE(c.exit.ok());
  std::vector<std::string> lines = absl::StrSplit(c.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 20000u);
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(lines[i], absl::StrCat("line-", i));
  EXPECT_GT(c.order.size(), 1u);
}

TEST_F(ProcessSupervisorTest, StdinBytesAreWrittenAndClosed) {
  ProcessSpec spec;
  spec.argv = {"/bin/cat"};
  spec.stdin_bytes = std::string(200'000, 'x') + "end";  // more than a pipe holds
  Captured c = RunToEnd(std::move(spec));
  ASSERT_TRUE(c.exit.ok());
  EXPECT_EQ(c.out.size(), 200'003u);
  EXPECT_TRUE(c.out.ends_with("xend"));
}

TEST_F(ProcessSupervisorTest, TheChildGetsOnlyTheGivenEnvironmentCwdAndDescriptors) {
  ProcessSpec env;
  env.argv = {"/usr/bin/env"};
  env.env = {"ONLY=this", "AND=that"};
  EXPECT_EQ(RunToEnd(std::move(env)).out, "ONLY=this\nAND=that\n");

  ProcessSpec cwd = Shell("pwd");
  cwd.cwd = "/usr/share";
  EXPECT_EQ(RunToEnd(std::move(cwd)).out, "/usr/share\n");

  // Descriptors: only 0, 1 and 2 (ls opens one more to read the directory).
  Captured fds = RunToEnd(Shell("ls /proc/self/fd"));
  std::vector<std::string> open = absl::StrSplit(fds.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(open.size(), 4u) << fds.out;
  EXPECT_THAT(std::vector<std::string>(open.begin(), open.begin() + 3), ElementsAre("0", "1", "2"));

  // Its own process group and no core dumps.
  Captured group = RunToEnd(
      Shell("read -r pid comm state ppid pgid rest < /proc/$$/stat; echo $pgid $$; ulimit -c"));
  std::vector<std::string> g = absl::StrSplit(group.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(g.size(), 2u) << group.out;
  std::vector<std::string> ids = absl::StrSplit(g[0], ' ');
  ASSERT_EQ(ids.size(), 2u) << g[0];
  EXPECT_EQ(ids[0], ids[1]);  // process group id == pid
  EXPECT_EQ(g[1], "0");

  // An empty signal mask, although the server's threads block SIGTERM/SIGINT/SIGHUP.
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);  // the helper thread inherits this mask
  Runner runner;
  ProcessSupervisor supervisor(runner.loop());
  pthread_sigmask(SIG_UNBLOCK, &blocked, nullptr);
  ProcessSpec mask;
  mask.argv = {"/bin/grep", "SigBlk", "/proc/self/status"};
  std::string out;
  auto main = [&]() -> Task<void> {
    auto exit = co_await supervisor.Run(std::move(mask), [&](OutputStream, absl::string_view b) {
      out.append(b.data(), b.size());
    });
    co_return exit.status();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  EXPECT_EQ(out, "SigBlk:\t0000000000000000\n");
}

TEST_F(ProcessSupervisorTest, ResourceLimitsApply) {
  ProcessSpec spec = Shell("ulimit -n; ulimit -t");
  spec.limits.open_files = 64;
  spec.limits.cpu_seconds = 7;
  EXPECT_EQ(RunToEnd(std::move(spec)).out, "64\n7\n");
}

TEST_F(ProcessSupervisorTest, RunsAsAnUnprivilegedUserWhenAsked) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  ProcessSpec spec;
  spec.argv = {"/usr/bin/id"};
  spec.run_as = Credentials{65534, 65534};
  Captured c = RunToEnd(std::move(spec));
  EXPECT_THAT(c.out, HasSubstr("uid=65534"));
  EXPECT_THAT(c.out, HasSubstr("gid=65534"));
  EXPECT_THAT(c.out, ::testing::Not(HasSubstr("groups=0")));
}

TEST_F(ProcessSupervisorTest, SpawnErrorsNameWhatFailed) {
  ProcessSpec missing;
  missing.argv = {"/no/such/program"};
  EXPECT_THAT(RunToEnd(std::move(missing)).exit.status(),
              StatusIs(absl::StatusCode::kNotFound,
                       "cannot execute /no/such/program: No such file or directory"));

  const std::string plain_file = TempPath("not-executable");
  WriteFile(plain_file, "data", 0644);
  ProcessSpec not_executable;
  not_executable.argv = {plain_file};
  EXPECT_THAT(RunToEnd(std::move(not_executable)).exit.status(),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       absl::StrCat("cannot execute ", plain_file, ": Permission denied")));

  const std::string garbage = TempPath("garbage");
  WriteFile(garbage, "\x01\x02 not a program", 0755);
  ProcessSpec bad_format;
  bad_format.argv = {garbage};
  EXPECT_THAT(RunToEnd(std::move(bad_format)).exit.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat("cannot execute ", garbage, ": Exec format error")));
  std::remove(plain_file.c_str());
  std::remove(garbage.c_str());

  ProcessSpec bad_cwd = Shell("true");
  bad_cwd.cwd = "/no/such/dir";
  EXPECT_THAT(RunToEnd(std::move(bad_cwd)).exit.status(),
              StatusIs(absl::StatusCode::kNotFound,
                       "cannot change to cwd /no/such/dir: No such file or directory"));

  EXPECT_THAT(RunToEnd(ProcessSpec{}).exit.status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "argv is empty: argv[0] must name the executable"));
}

// Dead: gone, or a zombie (killed, waiting for init, its new parent, to reap it).
bool Dead(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state)) return true;
  return state == "Z" || state == "X";
}

// Waits (bounded) until the process is dead; true if it is.
bool Gone(pid_t pid) {
  for (int i = 0; i < 500 && !Dead(pid); ++i) std::this_thread::sleep_for(10ms);
  return Dead(pid);
}

pid_t ReadPid(const std::string& path) {
  std::ifstream in(path);
  int pid = 0;
  in >> pid;
  return pid;
}

TEST_F(ProcessSupervisorTest, CancellingKillsTheWholeProcessGroupGrandchildrenToo) {
  const std::string pid_file = TempPath("grandchild");
  std::remove(pid_file.c_str());
  Captured c;
  auto main = [&]() -> Task<void> {
    ProcessSpec spec =
        Shell(absl::StrCat("sleep 1000 & echo $! > ", pid_file, "; echo ready; wait"));
    TaskHandle<ExitStatus> run = CreateTask(supervisor_.Run(std::move(spec), Capture(c)));
    while (c.out != "ready\n") COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(1ms));
    EXPECT_TRUE(run.Cancel("stop it"));
    c.exit = co_await Shield(run);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner_.Run(main()).ok());
  EXPECT_THAT(c.exit.status(), StatusIs(absl::StatusCode::kCancelled, "stop it"));
  pid_t grandchild = ReadPid(pid_file);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(Gone(grandchild));
  std::remove(pid_file.c_str());
}

TEST_F(ProcessSupervisorTest, AProcessIgnoringSigtermIsKilledAfterTheGrace) {
  Captured c;
  auto main = [&]() -> Task<void> {
    ProcessSpec spec = Shell("trap '' TERM; echo ready; while :; do sleep 0.01; done");
    spec.kill_grace = 100ms;
    TaskHandle<ExitStatus> run = CreateTask(supervisor_.Run(std::move(spec), Capture(c)));
    while (c.out != "ready\n") COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(1ms));
    auto start = std::chrono::steady_clock::now();
    run.Cancel("stop");
    c.exit = co_await Shield(run);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner_.Run(main()).ok());
  EXPECT_EQ(c.exit.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(ProcessSupervisorTest, BackgroundChildrenDoNotOutliveTheProcess) {
  const std::string pid_file = TempPath("leftover");
  std::remove(pid_file.c_str());
  // The shell exits at once, leaving a sleeper behind that holds stdout open.
  Captured c = RunToEnd(Shell(absl::StrCat("sleep 1000 & echo $! > ", pid_file)));
  ASSERT_TRUE(c.exit.ok());
  EXPECT_TRUE(c.exit->success());
  pid_t leftover = ReadPid(pid_file);
  ASSERT_GT(leftover, 0);
  EXPECT_TRUE(Gone(leftover));
  std::remove(pid_file.c_str());
}

TEST_F(ProcessSupervisorTest, ASlowLoopHoldsBackAFastWriter) {
  const std::string done_file = TempPath("writer-done");
  std::remove(done_file.c_str());
  constexpr size_t kTotal = size_t{16} << 20;
  size_t received = 0;
  bool writer_finished_while_loop_busy = true;
  auto main = [&]() -> Task<void> {
    ProcessSpec spec = Shell(absl::StrCat("head -c ", kTotal, " /dev/zero; touch ", done_file));
    bool first = true;
    auto exit = co_await supervisor_.Run(std::move(spec), [&](OutputStream, absl::string_view b) {
      received += b.size();
      if (first) {
        first = false;
        // The loop is busy: the helper must stop reading at its bound, so the writer blocks
        // on its full pipe instead of the output piling up in memory.
        std::this_thread::sleep_for(300ms);
        writer_finished_while_loop_busy = access(done_file.c_str(), F_OK) == 0;
      }
    });
    co_return exit.status();
  };
  ASSERT_TRUE(runner_.Run(main()).ok());
  EXPECT_FALSE(writer_finished_while_loop_busy);
  EXPECT_EQ(received, kTotal);  // and nothing was lost
  EXPECT_EQ(access(done_file.c_str(), F_OK), 0);
  std::remove(done_file.c_str());
}

TEST_F(ProcessSupervisorTest, ALingeringDescendantCostsNoBufferedOutput) {
  // The shell exits with more than the in-flight bound still on its way to a slow loop, while a
  // descendant in a session of its own holds stdout open: the linger must not cut it short.
  constexpr size_t kTotal = size_t{3} << 20;
  size_t received = 0;
  auto main = [&]() -> Task<void> {
    ProcessSpec spec = Shell(absl::StrCat("setsid sleep 3 & head -c ", kTotal, " /dev/zero"));
    auto exit = co_await supervisor_.Run(std::move(spec), [&](OutputStream, absl::string_view b) {
      received += b.size();
      std::this_thread::sleep_for(20ms);  // a busy loop: the helper hits its bound and pauses
    });
    EXPECT_TRUE(exit.ok() && exit->success());
    co_return exit.status();
  };
  ASSERT_TRUE(runner_.Run(main()).ok());
  EXPECT_EQ(received, kTotal);
}

// Fully gone: not even a zombie (someone reaped it).
bool Reaped(pid_t pid) {
  for (int i = 0; i < 500; ++i) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

TEST(ProcessSupervisorOrphansTest, AnOrphanThatLeftItsGroupIsKilledAndReaped) {
  Runner runner;
  ProcessSupervisor supervisor(runner.loop(), {.adopt_orphans = true});
  std::string out;
  auto main = [&]() -> Task<void> {
    // A sleeper in a session of its own, outside the process group a cancel or exit kills.
    ProcessSpec spec = Shell("setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!");
    auto exit = co_await supervisor.Run(std::move(spec), [&](OutputStream, absl::string_view b) {
      out.append(b.data(), b.size());
    });
    co_return exit.status();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  int escapee = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &escapee)) << out;
  const bool reaped = Reaped(escapee);
  if (!reaped) kill(escapee, SIGKILL);
  EXPECT_TRUE(reaped);
}

TEST(ProcessSupervisorOrphansTest, AnOrphanStillInARunningProcesssGroupLivesUntilItEnds) {
  Runner runner;
  ProcessSupervisor supervisor(runner.loop(), {.adopt_orphans = true});
  std::string out;
  bool alive_while_running = false;
  auto main = [&]() -> Task<void> {
    // The inner shell exits at once: its sleeper is an orphan, still in the outer shell's group.
    ProcessSpec spec = Shell("sh -c 'sleep 1000 >/dev/null & echo $!'; sleep 1.5");
    TaskHandle<ExitStatus> run =
        CreateTask(supervisor.Run(std::move(spec), [&](OutputStream, absl::string_view b) {
          out.append(b.data(), b.size());
        }));
    COTASK_CO_RETURN_IF_ERROR(co_await runtime::Sleep(1100ms));  // two scans
    int orphan = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &orphan)) {
      alive_while_running = !Dead(orphan);
    }
    co_return (co_await run).status();
  };
  ASSERT_TRUE(runner.Run(main()).ok());
  int orphan = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &orphan)) << out;
  EXPECT_TRUE(alive_while_running);
  // Its group was killed when the outer shell ended, and the supervisor reaped it.
  EXPECT_TRUE(Reaped(orphan));
}

TEST_F(ProcessSupervisorTest, ManyProcessesAtOnce) {
  std::vector<Captured> results(20);
  auto main = [&]() -> Task<void> {
    std::vector<TaskHandle<ExitStatus>> runs;
    runs.reserve(20);
    for (int i = 0; i < 20; ++i) {
      runs.push_back(CreateTask(
          supervisor_.Run(Shell(absl::StrCat("echo ", i, "; exit ", i % 3)), Capture(results[i]))));
    }
    for (int i = 0; i < 20; ++i) results[i].exit = co_await runs[i];
    co_return absl::OkStatus();
  };
  ASSERT_TRUE(runner_.Run(main()).ok());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(results[i].exit.ok());
    EXPECT_EQ(results[i].out, absl::StrCat(i, "\n"));
    EXPECT_EQ(results[i].exit->exit_code, i % 3);
  }
}

}  // namespace
}  // namespace cotask::process
