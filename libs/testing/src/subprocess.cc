#include "flamestream/testing/subprocess.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <thread>

extern char** environ;

namespace flamestream::testing {

using common::UniqueFd;
using Clock = std::chrono::steady_clock;

namespace {

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

ExitStatus Decode(int wstatus) {
  ExitStatus st;
  if (WIFEXITED(wstatus)) {
    st.exited = true;
    st.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    st.signal = WTERMSIG(wstatus);
  }
  return st;
}

}  // namespace

Result<std::unique_ptr<Subprocess>> Subprocess::Start(SubprocessOptions options) {
  if (options.argv.empty()) {
    return InvalidArgument("subprocess: empty argv");
  }
  // Everything the child needs is built before fork(): after it, in a threaded parent, only
  // async-signal-safe calls are allowed.
  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos) {
      env_map[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
  }
  for (const auto& [k, v] : options.env) {
    env_map[k] = v;
  }
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_map) {
    env_strings.push_back(k + "=" + v);
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (std::string& a : options.argv) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  // Resolve argv[0] against PATH now (execve does not search).
  std::string exe = options.argv[0];
  if (exe.find('/') == std::string::npos) {
    const char* path = std::getenv("PATH");
    std::string_view p = path != nullptr ? path : "/usr/bin:/bin";
    bool found = false;
    while (!p.empty()) {
      size_t colon = p.find(':');
      std::string candidate = std::string(p.substr(0, colon)) + "/" + exe;
      if (::access(candidate.c_str(), X_OK) == 0) {
        exe = candidate;
        found = true;
        break;
      }
      p = colon == std::string_view::npos ? std::string_view() : p.substr(colon + 1);
    }
    if (!found) {
      return NotFound("subprocess: {} not found in PATH", exe);
    }
  } else if (::access(exe.c_str(), X_OK) != 0) {
    return ErrnoError(errno, "subprocess: " + exe);
  }

  int in_pipe[2] = {-1, -1};
  int out_pipe[2] = {-1, -1};
  if (options.pipe_stdin && ::pipe2(in_pipe, O_CLOEXEC) != 0) {
    return ErrnoError(errno, "pipe");
  }
  UniqueFd in_r(in_pipe[0]);
  UniqueFd in_w(in_pipe[1]);
  if (options.capture_stdout && ::pipe2(out_pipe, O_CLOEXEC) != 0) {
    return ErrnoError(errno, "pipe");
  }
  UniqueFd out_r(out_pipe[0]);
  UniqueFd out_w(out_pipe[1]);
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    return ErrnoError(errno, "fork");
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    ::dup2(options.pipe_stdin ? in_r.get() : devnull.get(), STDIN_FILENO);
    if (options.capture_stdout) {
      ::dup2(out_w.get(), STDOUT_FILENO);
      if (options.capture_stderr) {
        ::dup2(out_w.get(), STDERR_FILENO);
      }
    }
    // The parent's signal mask and dispositions must not leak into the child.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  p->stdin_ = std::move(in_w);
  p->stdout_ = std::move(out_r);
  return p;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_) {
    ::kill(pid_, SIGKILL);
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
  }
}

Result<std::string> Subprocess::ReadLine(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      lines_.push_back(line);
      return line;
    }
    if (eof_ || !stdout_) {
      if (!buffer_.empty()) {
        std::string line = std::move(buffer_);
        buffer_.clear();
        lines_.push_back(line);
        return line;
      }
      return NotFound("subprocess {}: end of output", pid_);
    }
    pollfd pfd{stdout_.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, RemainingMs(deadline));
    if (r < 0 && errno != EINTR) {
      return ErrnoError(errno, "poll");
    }
    if (r == 0) {
      return DeadlineExceeded("subprocess {}: no line within {}ms", pid_, timeout.count());
    }
    if (r > 0) {
      char buf[4096];
      ssize_t n = ::read(stdout_.get(), buf, sizeof buf);
      if (n < 0 && errno != EINTR && errno != EAGAIN) {
        return ErrnoError(errno, "read");
      }
      if (n == 0) {
        eof_ = true;
      } else if (n > 0) {
        buffer_.append(buf, static_cast<size_t>(n));
      }
    }
  }
}

Result<std::string> Subprocess::WaitForLine(const std::function<bool(std::string_view)>& match,
                                            std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    Result<std::string> line = ReadLine(std::chrono::milliseconds(RemainingMs(deadline)));
    if (!line.ok()) {
      return line.error();
    }
    if (match(*line)) {
      return line;
    }
  }
}

Status Subprocess::WriteStdin(std::string_view data) {
  if (!stdin_) {
    return FailedPrecondition("subprocess {}: stdin is not a pipe", pid_);
  }
  while (!data.empty()) {
    // MSG_NOSIGNAL does not apply to pipes; a dead child gives EPIPE only if SIGPIPE is
    // ignored, so block it around the write.
    sigset_t pipe_set;
    sigset_t old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = ::write(stdin_.get(), data.data(), data.size());
    int err = errno;
    if (n < 0 && err == EPIPE) {
      // Consume the pending SIGPIPE so it does not fire once unblocked.
      timespec zero{0, 0};
      sigtimedwait(&pipe_set, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (n < 0) {
      if (err == EINTR) {
        continue;
      }
      return ErrnoError(err, "write to subprocess stdin");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Status Subprocess::Signal(int sig) {
  if (exit_) {
    return FailedPrecondition("subprocess {} already exited", pid_);
  }
  if (::kill(pid_, sig) != 0) {
    return ErrnoError(errno, "kill");
  }
  return OkStatus();
}

Result<ExitStatus> Subprocess::Wait(std::chrono::milliseconds timeout) {
  if (exit_) {
    return *exit_;
  }
  const auto deadline = Clock::now() + timeout;
  auto sleep = std::chrono::milliseconds(1);
  while (true) {
    int wstatus = 0;
    pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      exit_ = Decode(wstatus);
      return *exit_;
    }
    if (r < 0 && errno != EINTR) {
      return ErrnoError(errno, "waitpid");
    }
    if (Clock::now() >= deadline) {
      return DeadlineExceeded("subprocess {} still running after {}ms", pid_, timeout.count());
    }
    // No pidfd/SIGCHLD plumbing in a test helper: poll with a short, growing interval.
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2, std::chrono::milliseconds(20));
  }
}

bool Subprocess::running() {
  if (exit_) {
    return false;
  }
  int wstatus = 0;
  if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
    exit_ = Decode(wstatus);
    return false;
  }
  return true;
}

CommandResult RunCommand(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  CommandResult r;
  Result<std::unique_ptr<Subprocess>> proc =
      Subprocess::Start({.argv = std::move(argv), .capture_stderr = true});
  if (!proc.ok()) {
    r.output = proc.error().message();
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    Result<std::string> line = (*proc)->ReadLine(std::chrono::seconds(1));
    if (line.ok()) {
      r.output += *line + "\n";
    } else if (line.error().code() == StatusCode::kNotFound) {
      break;  // end of output
    }
  }
  Result<ExitStatus> st = (*proc)->Wait(std::chrono::seconds(10));
  if (!st.ok()) {
    (void)(*proc)->Signal(SIGKILL);
    (void)(*proc)->Wait(std::chrono::seconds(5));
    r.output += "[timed out: killed]\n";
    return r;
  }
  if (st->exited) r.exit = st->code;
  return r;
}

namespace {

// Binds 127.0.0.1:port (0: the kernel picks) and returns the bound port.
Result<int> BindLoopback(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return ErrnoError(errno, "socket");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError(errno, fmt::format("bind 127.0.0.1:{}", port));
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoError(errno, "getsockname");
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

// The low end of the kernel's ephemeral port range (net.ipv4.ip_local_port_range).
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  return (in >> low) ? low : 32768;
}

}  // namespace

Result<int> FreePort() {
  // Below the ephemeral range: a port the kernel hands out for "any port" (bind to 0, every
  // outgoing connection of every test running beside this one) may be taken between this
  // call and the server's bind; a random port below that range can only clash with another
  // test drawing the same number.
  const int high = std::min(EphemeralLow(), 65536) - 1;
  constexpr int kLow = 20000;
  if (high - kLow >= 1000) {
    std::random_device rd;
    std::uniform_int_distribution<int> pick(kLow, high);
    for (int attempt = 0; attempt < 100; ++attempt) {
      if (Result<int> p = BindLoopback(pick(rd)); p.ok()) {
        return p;
      }
    }
  }
  return BindLoopback(0);
}

Result<UniqueFd> ConnectLoopback(int port, std::chrono::milliseconds timeout) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return ErrnoError(errno, "socket");
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError(errno, fmt::format("connect 127.0.0.1:{}", port));
  }
  return fd;
}

}  // namespace flamestream::testing
