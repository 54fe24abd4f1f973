#include "supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "flamestream/common/backoff.h"
#include "flamestream/common/fd.h"
#include "probe.h"

namespace flamestream::cli {
namespace {

using Clock = std::chrono::steady_clock;
using common::UniqueFd;
using namespace std::chrono_literals;

// The last `n` lines of a log file, for error messages about a stage that died.
std::string Tail(const std::string& path, size_t n) {
  if (path.empty()) return "";
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > n) lines.erase(lines.begin());
  }
  std::string out;
  for (const std::string& l : lines) out += "\n    " + l;
  return out;
}

bool ExitOk(const std::string& exit) { return exit == "exit 0" || exit == "signal 15"; }

}  // namespace

std::string_view EventKindName(Event::Kind kind) {
  switch (kind) {
    case Event::Kind::kStarted: return "started";
    case Event::Kind::kReady: return "ready";
    case Event::Kind::kNotReady: return "not-ready";
    case Event::Kind::kExited: return "exited";
    case Event::Kind::kRestarting: return "restarting";
    case Event::Kind::kLagWait: return "lag-wait";
    case Event::Kind::kLagTimeout: return "lag-timeout";
    case Event::Kind::kStopping: return "stopping";
    case Event::Kind::kStopped: return "stopped";
    case Event::Kind::kKilled: return "killed";
  }
  return "?";
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
  return fmt::format("status {}", status);
}

Supervisor::Supervisor(std::vector<StageSpec> stages, SupervisorOptions options)
    : specs_(std::move(stages)), children_(specs_.size()), options_(std::move(options)) {}

Supervisor::~Supervisor() { Kill(); }

bool Supervisor::Aborted() const { return options_.abort && options_.abort(); }

void Supervisor::Emit(Event::Kind kind, size_t i, std::string detail) {
  if (options_.on_event) {
    options_.on_event(Event{kind, specs_[i].name, std::move(detail), Clock::now()});
  }
}

Status Supervisor::Spawn(size_t i) {
  const StageSpec& spec = specs_[i];
  Child& child = children_[i];
  std::vector<std::string> args = {spec.binary};
  args.insert(args.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  UniqueFd log;
  if (!spec.log_file.empty()) {
    log = UniqueFd(open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log) return ErrnoError(errno, fmt::format("open log file {}", spec.log_file));
    const std::string banner =
        fmt::format("--- flamestream up: starting {} ---\n", fmt::join(args, " "));
    (void)!write(log.get(), banner.data(), banner.size());
  }
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull) return ErrnoError(errno, "open /dev/null");
  // exec() failures come back through a close-on-exec pipe: EOF means exec succeeded.
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd exec_read(pipefd[0]);
  UniqueFd exec_write(pipefd[1]);

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork");
  if (pid == 0) {
    // Child: async-signal-safe calls only until exec.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP}) sigaction(sig, &dfl, nullptr);
    dup2(devnull.get(), STDIN_FILENO);
    if (log) {
      dup2(log.get(), STDOUT_FILENO);
      dup2(log.get(), STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    const int err = errno;
    (void)!write(exec_write.get(), &err, sizeof(err));
    _exit(127);
  }
  setpgid(pid, pid);  // also from the parent, so signalling the group never races the child
  exec_write.reset();
  int err = 0;
  ssize_t n;
  do {
    n = read(exec_read.get(), &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(err))) {
    int status = 0;
    waitpid(pid, &status, 0);
    return FailedPrecondition("stage {}: cannot execute {}: {}", spec.name, spec.binary,
                              std::strerror(err));
  }
  child.pid = pid;
  child.skipped_before_restart += child.skipped;
  child.skipped = 0;
  child.started = Clock::now();
  child.restart_at.reset();
  Emit(Event::Kind::kStarted, i, std::to_string(pid));
  return OkStatus();
}

std::optional<std::string> Supervisor::Reap(size_t i, bool block) {
  Child& child = children_[i];
  if (child.pid <= 0) return std::nullopt;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(child.pid, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != child.pid) return std::nullopt;
  child.pid = -1;
  child.last_exit = DescribeWaitStatus(status);
  return child.last_exit;
}

Status Supervisor::WaitReady(size_t i) {
  const StageSpec& spec = specs_[i];
  const auto deadline = Clock::now() + options_.ready_timeout;
  if (spec.ready.kind == ReadyKind::kNone) {
    // Nothing to wait for; an exit (even a quick one of a run_to_completion stage) is left
    // for Poll() to reap and judge.
    Emit(Event::Kind::kReady, i);
    return OkStatus();
  }
  while (true) {
    if (std::optional<std::string> exit = Reap(i, false)) {
      Emit(Event::Kind::kExited, i, *exit);
      return FailedPrecondition("stage {} ({}) {} before it was ready{}{}", spec.name,
                                spec.binary, *exit,
                                spec.log_file.empty() ? "" : "; its log " + spec.log_file + ":",
                                Tail(spec.log_file, 8));
    }
    bool ready = false;
    switch (spec.ready.kind) {
      case ReadyKind::kNone:
        ready = true;
        break;
      case ReadyKind::kTcp:
        ready = TcpConnects(spec.ready.port, 200ms);
        break;
      case ReadyKind::kHttp: {
        Result<int> code = HttpGetStatus(spec.ready.port, spec.ready.path, 500ms);
        ready = code.ok() && *code == 200;
        break;
      }
    }
    if (ready) {
      Emit(Event::Kind::kReady, i);
      return OkStatus();
    }
    if (Clock::now() >= deadline) {
      Emit(Event::Kind::kNotReady, i,
           fmt::format("not ready after {}ms; continuing", options_.ready_timeout.count()));
      return OkStatus();
    }
    std::this_thread::sleep_for(50ms);
  }
}

Status Supervisor::Start() {
  for (size_t i = 0; i < specs_.size(); ++i) {
    Status s = Spawn(i);
    if (s.ok()) s = WaitReady(i);
    if (!s.ok()) {
      // Stop what already runs, latest first; nothing was produced worth draining.
      for (size_t j = i + 1; j-- > 0;) {
        if (children_[j].pid > 0) (void)StopStage(j);
      }
      return s;
    }
  }
  return OkStatus();
}

void Supervisor::Poll() {
  if (draining_) return;
  const auto now = Clock::now();
  for (size_t i = 0; i < specs_.size(); ++i) {
    Child& child = children_[i];
    if (std::optional<std::string> exit = Reap(i, false)) {
      if (specs_[i].run_to_completion &&
          (*exit == "exit 0" || *exit == "exit 2" || child.restarts >= specs_[i].max_restarts)) {
        (*exit == "exit 0" ? child.done : child.failed) = true;
        Emit(Event::Kind::kExited, i, *exit);
        continue;
      }
      if (now - child.started >= options_.stable_after) child.consecutive_failures = 0;
      ++child.consecutive_failures;
      const std::chrono::milliseconds delay = BackoffDelay(
          {.initial = options_.backoff_initial, .max = options_.backoff_max},
          child.consecutive_failures - 1);
      child.restart_at = now + delay;
      Emit(Event::Kind::kExited, i, *exit);
      Emit(Event::Kind::kRestarting, i, fmt::format("in {}ms", delay.count()));
    }
    if (child.pid <= 0 && child.restart_at && now >= *child.restart_at) {
      ++child.restarts;
      Status s = Spawn(i);
      if (!s.ok()) {
        ++child.consecutive_failures;
        const auto delay = options_.backoff_max;
        child.restart_at = now + delay;
        Emit(Event::Kind::kExited, i, s.message());
        Emit(Event::Kind::kRestarting, i, fmt::format("in {}ms", delay.count()));
      }
    }
  }
}

void Supervisor::NoteMetrics(size_t i, const MetricSums& m) {
  if (std::optional<double> skipped = m.Get("fs_records_skipped_total")) {
    children_[i].skipped = std::max(children_[i].skipped, *skipped);
  }
}

void Supervisor::WaitForLag(size_t i) {
  const StageSpec& spec = specs_[i];
  if (!spec.wait_for_lag_zero || spec.metrics_port == 0) return;
  Emit(Event::Kind::kLagWait, i);
  const auto deadline = Clock::now() + options_.lag_timeout;
  std::optional<double> prev_in;
  bool prev_zero = false;
  std::string last = "no /metrics answer";
  while (Clock::now() < deadline) {
    if (Aborted()) return;
    if (Reap(i, false)) return;  // died while we waited: nothing left to wait for
    Result<MetricSums> m = ScrapeMetrics(spec.metrics_port, 1s);
    if (m.ok()) {
      NoteMetrics(i, *m);
      std::optional<double> lag = m->Get("fs_consumer_lag");
      if (!lag) return;  // the stage reports no lag: nothing to wait on
      const std::optional<double> in = m->Get("fs_records_in_total");
      // Zero twice in a row with no new input: lag gauges refresh periodically, and a single
      // zero can predate records the upstream stage flushed while it stopped.
      if (*lag == 0 && prev_zero && in == prev_in) return;
      prev_zero = *lag == 0;
      prev_in = in;
      last = fmt::format("lag {}", *lag);
    } else {
      last = m.error().message();
    }
    std::this_thread::sleep_for(500ms);
  }
  Emit(Event::Kind::kLagTimeout, i, last);
}

Status Supervisor::StopStage(size_t i) {
  Child& child = children_[i];
  child.restart_at.reset();
  if (child.pid <= 0) return OkStatus();
  if (specs_[i].metrics_port != 0) {
    if (Result<MetricSums> m = ScrapeMetrics(specs_[i].metrics_port, 500ms); m.ok()) {
      NoteMetrics(i, *m);
    }
  }
  Emit(Event::Kind::kStopping, i);
  kill(-child.pid, SIGTERM);
  const auto deadline = Clock::now() + options_.stop_timeout;
  while (Clock::now() < deadline && !Aborted()) {
    if (std::optional<std::string> exit = Reap(i, false)) {
      Emit(Event::Kind::kStopped, i, *exit);
      if (!ExitOk(*exit)) {
        return InternalError("{} {} while draining", specs_[i].name, *exit);
      }
      return OkStatus();
    }
    std::this_thread::sleep_for(20ms);
  }
  kill(-child.pid, SIGKILL);
  (void)Reap(i, true);
  Emit(Event::Kind::kKilled, i,
       Aborted() ? std::string("aborted")
                 : fmt::format("did not exit within {}ms of SIGTERM", options_.stop_timeout.count()));
  return DeadlineExceeded("{} did not drain within {}ms and was killed", specs_[i].name,
                          options_.stop_timeout.count());
}

Status Supervisor::Drain() {
  draining_ = true;
  std::vector<size_t> order;
  for (const std::string& name : options_.drain_order) {
    for (size_t i = 0; i < specs_.size(); ++i) {
      if (specs_[i].name == name) order.push_back(i);
    }
  }
  for (size_t i = specs_.size(); i-- > 0;) {
    if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
  }
  std::vector<std::string> failures;
  for (size_t i : order) {
    if (std::optional<std::string> exit = Reap(i, false)) {
      Emit(Event::Kind::kExited, i, *exit);
    }
    children_[i].restart_at.reset();
    if (children_[i].pid <= 0) continue;
    WaitForLag(i);
    Status s = StopStage(i);
    if (!s.ok()) failures.push_back(s.message());
  }
  if (!failures.empty()) {
    return InternalError("drain: {}", fmt::join(failures, "; "));
  }
  return OkStatus();
}

void Supervisor::Kill() {
  draining_ = true;
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i].pid > 0) {
      kill(-children_[i].pid, SIGKILL);
      (void)Reap(i, true);
    }
    children_[i].restart_at.reset();
  }
}

std::vector<StageState> Supervisor::Snapshot() const {
  std::vector<StageState> out;
  for (size_t i = 0; i < specs_.size(); ++i) {
    out.push_back({specs_[i].name, children_[i].pid, children_[i].restarts,
                   children_[i].last_exit, children_[i].done, children_[i].failed,
                   children_[i].skipped_before_restart + children_[i].skipped});
  }
  return out;
}

}  // namespace flamestream::cli
