// A child process for tests: spawn with args/env, read stdout lines, signal, wait.
//
//   FS_ASSIGN_OR_RETURN(auto proc, Subprocess::Start({.argv = {"redis-server", "--port", "0"}}));
//   Result<std::string> line = proc->WaitForLine(
//       [](std::string_view l) { return l.starts_with("bootstrap="); }, 10s);
//   (void)proc->WriteStdin("broker 1 down\n");
//   (void)proc->Signal(SIGTERM);
//   Result<ExitStatus> st = proc->Wait(5s);
//   // The destructor SIGKILLs and reaps a child that is still running.
//
// The child also dies with the test process (PR_SET_PDEATHSIG), so a crashed or killed test
// does not leave brokers or redis servers behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flamestream/common/fd.h"
#include "flamestream/common/status.h"

namespace flamestream::testing {

struct SubprocessOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  // Added to (or replacing in) the inherited environment.
  std::vector<std::pair<std::string, std::string>> env;
  bool pipe_stdin = false;      // else /dev/null
  bool capture_stdout = true;   // else inherited
  bool capture_stderr = false;  // merged into the stdout pipe; else inherited (test log)
};

struct ExitStatus {
  bool exited = false;  // exited normally with `code`
  int code = -1;
  int signal = 0;  // killed by this signal
  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

class Subprocess {
 public:
  static Result<std::unique_ptr<Subprocess>> Start(SubprocessOptions options);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }

  // The next stdout line (without '\n'). NotFound at end of output, DeadlineExceeded on timeout.
  Result<std::string> ReadLine(std::chrono::milliseconds timeout);
  // Reads lines until one satisfies `match`; returns it. Lines read are kept in lines().
  Result<std::string> WaitForLine(const std::function<bool(std::string_view)>& match,
                                  std::chrono::milliseconds timeout);
  // Every stdout line read so far.
  [[nodiscard]] const std::vector<std::string>& lines() const { return lines_; }

  Status WriteStdin(std::string_view data);
  void CloseStdin() { stdin_.reset(); }
  Status Signal(int sig);
  // Waits for exit; DeadlineExceeded if still running after `timeout`.
  Result<ExitStatus> Wait(std::chrono::milliseconds timeout);
  [[nodiscard]] bool running();

 private:
  Subprocess() = default;

  pid_t pid_ = -1;
  std::optional<ExitStatus> exit_;
  common::UniqueFd stdin_;
  common::UniqueFd stdout_;
  std::string buffer_;
  bool eof_ = false;
  std::vector<std::string> lines_;
};

// What RunCommand saw: the exit code (-1 when the command could not start, was killed by a
// signal or outlived the timeout, which then kills it) and stdout + stderr, lines joined by '\n'.
struct CommandResult {
  int exit = -1;
  std::string output;
};
// Runs `argv` to completion, for end-to-end tests that drive the CLI:
//   auto [code, text] = testing::RunCommand({bin, "up", "--duration", "10s"}, 180s);
CommandResult RunCommand(std::vector<std::string> argv, std::chrono::milliseconds timeout);

// A loopback TCP port that was free a moment ago: a random one below the kernel's ephemeral
// range (so no test's outgoing connection or bind-to-0 can take it meanwhile), else one the
// kernel picks. Still racy by nature: prefer `--port 0` with the child printing its port
// where the program supports it.
Result<int> FreePort();

// Connects to 127.0.0.1:port (blocking, with timeout).
Result<common::UniqueFd> ConnectLoopback(int port, std::chrono::milliseconds timeout);

}  // namespace flamestream::testing
