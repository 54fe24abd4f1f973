#include "flamestream/testing/dev_broker.h"

#include <signal.h>
#include <sys/socket.h>

#include <cstdlib>

#include "flamestream/common/strings.h"

namespace flamestream::testing {

using Clock = std::chrono::steady_clock;

Result<std::string> BinPath(std::string_view name) {
  const char* dir = std::getenv("FS_BIN_DIR");
  if (dir == nullptr || *dir == '\0') {
    return FailedPrecondition("FS_BIN_DIR is not set (run the test through ctest)");
  }
  return fmt::format("{}/{}", dir, name);
}

Result<std::unique_ptr<DevBroker>> DevBroker::Start(DevBrokerOptions options) {
  FS_ASSIGN_OR_RETURN(std::string bin, BinPath("flamestream-devbroker"));
  SubprocessOptions sp;
  sp.argv = {bin,
             "--port",
             "0",
             "--brokers",
             std::to_string(options.brokers),
             "--partitions",
             std::to_string(options.partitions)};
  if (!options.topics.empty()) {
    sp.argv.push_back("--topics");
    sp.argv.push_back(common::Join(options.topics, ","));
  }
  if (options.use_admin_port) {
    sp.argv.push_back("--admin-port");
    sp.argv.push_back("0");
  }
  sp.argv.insert(sp.argv.end(), options.extra_args.begin(), options.extra_args.end());
  sp.pipe_stdin = true;
  std::unique_ptr<DevBroker> b(new DevBroker());
  FS_ASSIGN_OR_RETURN(b->proc_, Subprocess::Start(std::move(sp)));
  b->use_admin_port_ = options.use_admin_port;
  // The broker prints `admin=` (when asked) before `bootstrap=`, which means ready.
  FS_ASSIGN_OR_RETURN(
      std::string line,
      b->proc_->WaitForLine([](std::string_view l) { return l.starts_with("bootstrap="); },
                            options.start_timeout));
  b->bootstrap_ = line.substr(std::string_view("bootstrap=").size());
  for (const std::string& l : b->proc_->lines()) {
    if (l.starts_with("admin=")) {
      size_t colon = l.rfind(':');
      FS_ASSIGN_OR_RETURN(b->admin_port_, common::ParseInt<int>(l.substr(colon + 1)));
    }
  }
  if (options.use_admin_port && b->admin_port_ == 0) {
    return InternalError("dev broker did not print its admin port");
  }
  return b;
}

namespace {

Status ParseReply(std::string_view reply) {
  if (reply == "ok") {
    return OkStatus();
  }
  if (reply.starts_with("error:")) {
    return InvalidArgument("{}", common::Trim(reply.substr(6)));
  }
  return InternalError("unexpected dev broker reply \"{}\"", reply);
}

bool IsFinalReply(std::string_view l) { return l == "ok" || l.starts_with("error:"); }

}  // namespace

Status DevBroker::Command(std::string_view line, std::chrono::milliseconds timeout) {
  std::string cmd(common::Trim(line));
  cmd.push_back('\n');
  if (!use_admin_port_) {
    FS_RETURN_IF_ERROR(proc_->WriteStdin(cmd));
    FS_ASSIGN_OR_RETURN(std::string reply, proc_->WaitForLine(IsFinalReply, timeout));
    return ParseReply(reply);
  }
  FS_ASSIGN_OR_RETURN(common::UniqueFd fd, ConnectLoopback(admin_port_, timeout));
  if (::send(fd.get(), cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size())) {
    return ErrnoError(errno, "send to dev broker admin port");
  }
  // Read reply lines until the final one (help prints several lines before "ok").
  std::string buf;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string l = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (IsFinalReply(l)) {
        return ParseReply(l);
      }
    }
    char chunk[1024];
    ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n <= 0) {
      return n == 0 ? Unavailable("dev broker admin port closed without a reply")
                    : ErrnoError(errno, "recv from dev broker admin port");
    }
    buf.append(chunk, static_cast<size_t>(n));
  }
  return DeadlineExceeded("dev broker command \"{}\" got no reply", common::Trim(line));
}

Status DevBroker::Stop(std::chrono::milliseconds timeout) {
  FS_RETURN_IF_ERROR(proc_->Signal(SIGTERM));
  FS_ASSIGN_OR_RETURN(ExitStatus st, proc_->Wait(timeout));
  if (!st.exited || st.code != 0) {
    return InternalError("dev broker exited with code {} signal {}", st.code, st.signal);
  }
  return OkStatus();
}

}  // namespace flamestream::testing
