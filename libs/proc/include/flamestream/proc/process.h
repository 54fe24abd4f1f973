// Per-process facts from /proc: namespace pids, comm, exe, start time, cgroup and container.
//
//   Result<ProcessInfo> info = ReadProcessInfo(pid);
//   // info->nspids = {4711, 1}: host pid 4711 is pid 1 inside its container's pid namespace
//   // info->cgroup.container_id = "3f1c...", info->start_wall_ns = 1795438575553256963
//
// The parsers take file contents, not paths, so tests feed them hand-written and corrupted text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/proc/cgroup.h"

namespace flamestream::proc {

// Reads a whole /proc file (their st_size is 0, so read until EOF), up to `max_bytes`.
Result<std::string> ReadProcFile(const std::string& path, size_t max_bytes = 1 << 20);

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot). The comm field may
// contain spaces and parentheses, so fields are counted after the last ')'.
Result<uint64_t> ParseStatStartTicks(std::string_view stat);

// Start time (ticks since boot) of the live process `pid`: one read of <proc_root>/<pid>/stat.
// NotFound-like errors when it is gone; a different value than remembered means the pid was
// reused by a new process.
Result<uint64_t> ReadStartTicks(uint32_t pid, const std::string& proc_root = "/proc");

struct ProcStatus {
  std::string name;                // "Name:" (comm, maybe escaped by the kernel)
  uint32_t tgid = 0;
  uint32_t pid = 0;
  uint32_t ppid = 0;
  std::vector<uint32_t> nstgid;    // outermost (host) first
  std::vector<uint32_t> nspid;     // outermost (host) first; last is the innermost namespace
};
Result<ProcStatus> ParseStatus(std::string_view status);

// Ticks since boot -> wall-clock ns, using CLOCK_BOOTTIME (which counts suspend, like the
// kernel's start_time) against CLOCK_REALTIME now.
uint64_t StartTicksToWallNs(uint64_t start_ticks);

struct ProcessInfo {
  uint32_t pid = 0;                // host tgid
  uint32_t ns_pid = 0;             // innermost-namespace pid (== pid outside containers)
  std::vector<uint32_t> nspids;    // all levels, host first
  uint32_t ppid = 0;
  std::string comm;
  std::string exe;                 // readlink of /proc/<pid>/exe; empty for kernel threads
  uint64_t start_ticks = 0;
  uint64_t start_wall_ns = 0;
  CgroupInfo cgroup;
  std::string cmdline;             // only when asked for (privacy)
};

struct ProcessInfoOptions {
  std::string proc_root = "/proc";
  bool cmdline = false;
};
Result<ProcessInfo> ReadProcessInfo(uint32_t pid, const ProcessInfoOptions& options = {});

}  // namespace flamestream::proc
