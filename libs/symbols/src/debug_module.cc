#include "debug_module.h"

#include "dwarf_worker.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include <spawn.h>

#include <filesystem>

#include "flamestream/log/log.h"

namespace flamestream::symbols {

using namespace wire;

// --- DwarfWorker (parent side) ---

std::string FindDwarfWorkerBinary(const std::string& configured,
                                  std::vector<std::string>* tried) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto executable = [&](const fs::path& p, std::string_view source = "") {
    if (tried != nullptr) {
      tried->push_back(fmt::format("{}{}", source, p.string()));
    }
    return !p.empty() && fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
  };
  if (!configured.empty()) {
    return executable(configured, "dwarf_worker=") ? configured : "";
  }
  if (const char* env = std::getenv("FLAMESTREAM_DWARF_WORKER"); env != nullptr && *env != 0) {
    return executable(env, "$FLAMESTREAM_DWARF_WORKER=") ? env : "";
  }
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) {
    if (tried != nullptr) {
      tried->push_back("(next to this executable: /proc/self/exe unreadable)");
    }
    return "";
  }
  // Installed next to the service; in a build tree tests/ and bench/ sit beside bin/.
  for (const fs::path& p : {self.parent_path() / kDwarfWorkerName,
                            self.parent_path().parent_path() / "bin" / kDwarfWorkerName}) {
    if (executable(p)) {
      return p.string();
    }
  }
  return "";
}

Result<std::unique_ptr<DwarfWorker>> DwarfWorker::Create(std::string executable,
                                                         const DwarfEngine* engine,
                                                         std::chrono::milliseconds timeout) {
  if (executable.empty() && engine == nullptr) {
    return InvalidArgument("DWARF worker: no executable and no in-process engine to fork");
  }
  auto worker =
      std::unique_ptr<DwarfWorker>(new DwarfWorker(std::move(executable), engine, timeout));
  FS_RETURN_IF_ERROR(worker->Start());
  return worker;
}

DwarfWorker::~DwarfWorker() { Stop(); }

Status DwarfWorker::Start() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoError(errno, "socketpair for the DWARF worker");
  }
  common::UniqueFd parent_end(fds[0]);
  common::UniqueFd child_end(fds[1]);
  pid_t pid = -1;
  if (!executable_.empty()) {
    pid = Spawn(child_end.get());
  }
  if (pid < 0 && engine_ != nullptr) {
    pid = Fork(child_end.get());
    if (pid < 0) {
      return ErrnoError(errno, "fork DWARF worker");
    }
  }
  if (pid < 0) {
    return Unavailable("DWARF worker {} could not be started (see the log), and no "
                       "in-process engine (SymbolizerConfig::dwarf_engine) to fork",
                       failed_executable_);
  }
  child_end.reset();
  int flags = ::fcntl(parent_end.get(), F_GETFL);
  ::fcntl(parent_end.get(), F_SETFL, flags | O_NONBLOCK);
  pid_ = pid;
  sock_ = std::move(parent_end);
  open_.clear();
  ++starts_;
  return OkStatus();
}

pid_t DwarfWorker::Spawn(int child_fd) {
  // posix_spawn (vfork + exec): no copy of this process's page tables and no copy-on-write
  // faults afterwards, a fresh address space with only the worker's few libraries, no
  // inherited locks or descriptors; the worker reads EOF and exits when this process goes.
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&actions, child_fd, 3);  // clears close-on-exec
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  sigset_t none;
  sigset_t all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string fd_arg = "--fd=3";
  char* argv[] = {executable_.data(), fd_arg.data(), nullptr};
  // The worker allocates most of its memory parsing a file's units at once: transparent huge
  // pages for its heap cut its page faults ~4x (measured: cold path 25k -> 35k frames per CPU
  // second). Only when the environment does not already tune glibc.
  std::vector<char*> envp;
  bool tuned = false;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    tuned = tuned || std::strncmp(*e, "GLIBC_TUNABLES=", 15) == 0;
    envp.push_back(*e);
  }
  std::string tunables = "GLIBC_TUNABLES=glibc.malloc.hugetlb=1";
  if (!tuned) {
    envp.push_back(tunables.data());
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, executable_.c_str(), &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    log::Warn(engine_ != nullptr ? "DWARF worker could not be started; forking instead"
                                 : "DWARF worker could not be started",
              {{"path", executable_}, {"error", std::strerror(rc)}});
    // With an engine, later restarts fork; without one, each restart tries the executable again.
    failed_executable_ = executable_;
    if (engine_ != nullptr) {
      executable_.clear();
    }
    return -1;
  }
  return pid;
}

// Fallback when the worker executable is missing and the caller gave an engine: a fork of
// this process (costlier: page tables copied, copy-on-write faults on both sides while they
// share memory).
pid_t DwarfWorker::Fork(int child_fd) {
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // The child: die with the parent, hold none of its other descriptors (sockets, listeners),
    // keep LLVM's warnings off the parent's stderr, and crash plainly (default dispositions).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(0);
    for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGPIPE, SIGTERM, SIGINT}) {
      ::signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);
    if (child_fd != 3 && ::dup2(child_fd, 3) < 0) ::_exit(4);
    ::close_range(4, ~0U, 0);
    engine_->Serve(3);
  }
  return pid;
}

void DwarfWorker::Stop() {
  sock_.reset();
  open_.clear();
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
}

Status DwarfWorker::WorkerFailed(std::string_view what, const std::string& path, bool exited) {
  ++crashes_;
  sock_.reset();
  open_.clear();
  int status = 0;
  bool reaped = false;
  if (pid_ > 0) {
    // A worker that closed its socket is dying: give it a moment to be reaped, so the error
    // names its signal; a hung or confused one is killed.
    const auto grace = std::chrono::steady_clock::now() +
                       (exited ? std::chrono::milliseconds(500) : std::chrono::milliseconds(0));
    while (!(reaped = ::waitpid(pid_, &status, WNOHANG) == pid_) &&
           std::chrono::steady_clock::now() < grace) {
      ::usleep(1000);
    }
    if (!reaped) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
  }
  if (reaped && WIFSIGNALED(status)) {
    return DataLoss("{}: corrupt debug info (the DWARF parser died with signal {})", path,
                    WTERMSIG(status));
  }
  return DataLoss("{}: corrupt debug info (DWARF worker: {})", path, what);
}

Result<std::string> DwarfWorker::Call(const std::string& request, const std::string& path) {
  if (!sock_) {
    FS_RETURN_IF_ERROR(Start());
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  auto wait = [&](short events) -> int {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return 0;
      struct pollfd pfd = {sock_.get(), events, 0};
      int r = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  };
  std::string_view out = request;
  while (!out.empty()) {
    ssize_t n = ::send(sock_.get(), out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (wait(POLLOUT) <= 0) return WorkerFailed("request timed out", path);
      continue;
    }
    return WorkerFailed("the worker closed its socket", path, /*exited=*/true);
  }
  // Read the length, then the payload straight into its final buffer.
  uint32_t len = 0;
  std::string in;
  size_t got = 0;
  bool have_length = false;
  while (!have_length || got < in.size()) {
    char* dst = have_length ? in.data() + got : reinterpret_cast<char*>(&len) + got;
    const size_t want = have_length ? in.size() - got : 4 - got;
    ssize_t n = ::read(sock_.get(), dst, want);
    if (n > 0) {
      got += static_cast<size_t>(n);
      if (!have_length && got == 4) {
        have_length = true;
        in.resize(len);
        got = 0;
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (wait(POLLIN) <= 0) {
        return WorkerFailed(fmt::format("no answer within {}ms", timeout_.count()), path);
      }
      continue;
    }
    return WorkerFailed("the worker exited", path, /*exited=*/true);
  }
  return in;
}

Status DwarfWorker::OpenAs(uint64_t handle, const std::string& path) {
  std::string req;
  req.push_back(static_cast<char>(kOpen));
  PutU64(req, handle);
  PutStr(req, path);
  Result<std::string> reply = Call(Frame(std::move(req)), path);
  if (!reply.ok()) {
    return reply.error();
  }
  Reader in(*reply);
  uint8_t ok = 0;
  if (!in.U8(&ok)) return WorkerFailed("malformed reply", path);
  if (ok == 0) {
    std::string_view message;
    (void)in.Str(&message);
    return DataLoss("{}", message);
  }
  open_.push_back(handle);
  return OkStatus();
}

Result<uint64_t> DwarfWorker::Open(const std::string& path) {
  const uint64_t handle = next_handle_++;
  FS_RETURN_IF_ERROR(OpenAs(handle, path));
  return handle;
}

Result<std::vector<Result<Location>>> DwarfWorker::Symbolize(
    uint64_t handle, const std::string& path, std::span<const uint64_t> addresses) {
  // After a restart the new worker has none of the old one's files: reopen on demand.
  if (std::find(open_.begin(), open_.end(), handle) == open_.end()) {
    FS_RETURN_IF_ERROR(OpenAs(handle, path));
  }
  std::string req;
  req.reserve(17 + addresses.size() * 8);
  req.push_back(static_cast<char>(kSymbolize));
  PutU64(req, handle);
  PutU32(req, static_cast<uint32_t>(addresses.size()));
  for (uint64_t a : addresses) PutU64(req, a);
  Result<std::string> reply = Call(Frame(std::move(req)), path);
  if (!reply.ok()) {
    return reply.error();
  }
  Reader in(*reply);
  uint8_t ok = 0;
  uint32_t n = 0;
  if (!in.U8(&ok)) return WorkerFailed("malformed reply", path);
  if (ok == 0) {
    std::string_view message;
    (void)in.Str(&message);
    return DataLoss("{}: {}", path, message);
  }
  if (!in.U32(&n) || n != addresses.size()) return WorkerFailed("malformed reply", path);
  std::vector<Result<Location>> out;
  out.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    uint8_t item_ok = 0;
    std::string_view body;
    if (!in.U8(&item_ok) || !in.Str(&body)) return WorkerFailed("malformed reply", path);
    if (item_ok == 0) {
      out.emplace_back(DataLoss("{}", body));
      continue;
    }
    Location loc;
    if (!DecodeLocation(body, &loc)) return WorkerFailed("undecodable location", path);
    out.emplace_back(std::move(loc));
  }
  return out;
}

void DwarfWorker::Close(uint64_t handle) {
  auto it = std::find(open_.begin(), open_.end(), handle);
  if (it == open_.end() || !sock_) {
    return;
  }
  open_.erase(it);
  std::string req;
  req.push_back(static_cast<char>(kClose));
  PutU64(req, handle);
  // Best effort: a worker that cannot take it is replaced on the next request anyway.
  std::string frame = Frame(std::move(req));
  if (::send(sock_.get(), frame.data(), frame.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(frame.size())) {
    Stop();
  }
}

// --- DebugModule ---

DebugModule::DebugModule(DebugFiles files, std::unique_ptr<DwarfFile> local, DwarfWorker* worker,
                       uint64_t handle)
    : files_(std::move(files)), local_(std::move(local)), worker_(worker), handle_(handle) {}

DebugModule::~DebugModule() {
  if (worker_ != nullptr) {
    worker_->Close(handle_);
  }
}

Result<std::unique_ptr<DebugModule>> DebugModule::Open(DebugFiles files, DwarfWorker* worker,
                                                     const DwarfEngine* engine) {
  if (worker != nullptr) {
    FS_ASSIGN_OR_RETURN(uint64_t handle, worker->Open(files.debug.path));
    return std::unique_ptr<DebugModule>(new DebugModule(std::move(files), nullptr, worker, handle));
  }
  if (engine == nullptr) {
    return InternalError("{}: neither a DWARF worker nor an in-process engine", files.debug.path);
  }
  FS_ASSIGN_OR_RETURN(std::unique_ptr<DwarfFile> local, engine->Open(files.debug.path));
  return std::unique_ptr<DebugModule>(new DebugModule(std::move(files), std::move(local), nullptr, 0));
}

Result<std::vector<Result<Location>>> DebugModule::SymbolizeMany(
    std::span<const uint64_t> addresses) {
  if (worker_ != nullptr) {
    return worker_->Symbolize(handle_, files_.debug.path, addresses);
  }
  std::vector<Result<Location>> out;
  out.reserve(addresses.size());
  for (uint64_t a : addresses) {
    out.push_back(local_->Symbolize(a));
  }
  return out;
}

Result<Location> DebugModule::Symbolize(uint64_t address) {
  FS_ASSIGN_OR_RETURN(std::vector<Result<Location>> out, SymbolizeMany({&address, 1}));
  return std::move(out.front());
}

}  // namespace flamestream::symbols
