#include "flamestream/common/clock.h"
#include "flamestream/proc/process.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"

namespace flamestream::proc {
namespace {

Result<std::vector<uint32_t>> ParsePidList(std::string_view s) {
  std::vector<uint32_t> out;
  std::string copy(s);
  for (char& c : copy) {
    if (c == '\t') c = ' ';
  }
  for (const std::string& f : common::SplitNonEmpty(copy, ' ')) {
    FS_ASSIGN_OR_RETURN(uint32_t v, common::ParseInt<uint32_t>(f));
    out.push_back(v);
  }
  return out;
}


}  // namespace

Result<std::string> ReadProcFile(const std::string& path, size_t max_bytes) {
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError(errno, path);
  }
  std::string out;
  char buf[8192];
  while (out.size() < max_bytes) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > max_bytes) {
    out.resize(max_bytes);
  }
  return out;
}

Result<uint64_t> ParseStatStartTicks(std::string_view stat) {
  const size_t close = stat.rfind(')');
  if (close == std::string_view::npos) {
    return InvalidArgument("stat has no ')' after comm");
  }
  // After "pid (comm)" come fields 3..; start time is field 22, the 20th after ')'.
  std::vector<std::string> fields = common::SplitNonEmpty(stat.substr(close + 1), ' ');
  if (fields.size() < 20) {
    return InvalidArgument("stat has {} fields after comm, need 20", fields.size());
  }
  return common::ParseInt<uint64_t>(fields[19]);
}

Result<ProcStatus> ParseStatus(std::string_view status) {
  ProcStatus st;
  bool have_tgid = false;
  for (const std::string& line : common::Split(status, '\n')) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string_view key(line.data(), colon);
    std::string_view value = common::Trim(std::string_view(line).substr(colon + 1));
    if (key == "Name") {
      st.name = std::string(value);
    } else if (key == "Tgid") {
      FS_ASSIGN_OR_RETURN(st.tgid, common::ParseInt<uint32_t>(value));
      have_tgid = true;
    } else if (key == "Pid") {
      FS_ASSIGN_OR_RETURN(st.pid, common::ParseInt<uint32_t>(value));
    } else if (key == "PPid") {
      FS_ASSIGN_OR_RETURN(st.ppid, common::ParseInt<uint32_t>(value));
    } else if (key == "NStgid") {
      FS_ASSIGN_OR_RETURN(st.nstgid, ParsePidList(value));
    } else if (key == "NSpid") {
      FS_ASSIGN_OR_RETURN(st.nspid, ParsePidList(value));
    }
  }
  if (!have_tgid) {
    return InvalidArgument("status has no Tgid line");
  }
  // Kernels before 4.1 have no NSpid: the process is then only known by its host pid.
  if (st.nstgid.empty()) st.nstgid = {st.tgid};
  if (st.nspid.empty()) st.nspid = {st.pid};
  return st;
}

uint64_t StartTicksToWallNs(uint64_t start_ticks) {
  static const long kTicks = ::sysconf(_SC_CLK_TCK);
  const int64_t boot_wall = ClockNs(CLOCK_REALTIME) - ClockNs(CLOCK_BOOTTIME);
  const auto since_boot =
      static_cast<int64_t>(start_ticks / kTicks) * 1'000'000'000 +
      static_cast<int64_t>(start_ticks % kTicks) * 1'000'000'000 / kTicks;
  return static_cast<uint64_t>(boot_wall + since_boot);
}

Result<uint64_t> ReadStartTicks(uint32_t pid, const std::string& proc_root) {
  FS_ASSIGN_OR_RETURN(std::string stat, ReadProcFile(fmt::format("{}/{}/stat", proc_root, pid)));
  return ParseStatStartTicks(stat);
}

Result<ProcessInfo> ReadProcessInfo(uint32_t pid, const ProcessInfoOptions& options) {
  const std::string dir = fmt::format("{}/{}", options.proc_root, pid);
  ProcessInfo info;
  info.pid = pid;
  FS_ASSIGN_OR_RETURN(std::string status_text, ReadProcFile(dir + "/status"));
  FS_ASSIGN_OR_RETURN(ProcStatus st, ParseStatus(status_text));
  info.nspids = st.nstgid;
  info.ns_pid = st.nstgid.back();
  info.ppid = st.ppid;
  info.comm = st.name;
  FS_ASSIGN_OR_RETURN(std::string stat, ReadProcFile(dir + "/stat"));
  FS_ASSIGN_OR_RETURN(info.start_ticks, ParseStatStartTicks(stat));
  info.start_wall_ns = StartTicksToWallNs(info.start_ticks);
  char exe[4096];
  const ssize_t n = ::readlink((dir + "/exe").c_str(), exe, sizeof(exe));
  if (n > 0) {
    info.exe.assign(exe, static_cast<size_t>(n));
  }
  if (Result<std::string> cg = ReadProcFile(dir + "/cgroup"); cg.ok()) {
    info.cgroup = ParseCgroup(*cg);
  }
  if (options.cmdline) {
    if (Result<std::string> cmd = ReadProcFile(dir + "/cmdline"); cmd.ok()) {
      // Arguments are NUL-separated; the last one is NUL-terminated.
      info.cmdline = common::ReplaceAll(*cmd, std::string(1, '\0'), " ");
      while (!info.cmdline.empty() && info.cmdline.back() == ' ') info.cmdline.pop_back();
    }
  }
  return info;
}

}  // namespace flamestream::proc
