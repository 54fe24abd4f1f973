#include "flamestream/bpf/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "flamestream/common/strings.h"

namespace flamestream::bpf {

std::string CapabilityName(Capability cap) {
  // linux/capability.h numbering (0..40 as of Linux 6.x).
  static constexpr const char* kNames[] = {"CHOWN",
                                           "DAC_OVERRIDE",
                                           "DAC_READ_SEARCH",
                                           "FOWNER",
                                           "FSETID",
                                           "KILL",
                                           "SETGID",
                                           "SETUID",
                                           "SETPCAP",
                                           "LINUX_IMMUTABLE",
                                           "NET_BIND_SERVICE",
                                           "NET_BROADCAST",
                                           "NET_ADMIN",
                                           "NET_RAW",
                                           "IPC_LOCK",
                                           "IPC_OWNER",
                                           "SYS_MODULE",
                                           "SYS_RAWIO",
                                           "SYS_CHROOT",
                                           "SYS_PTRACE",
                                           "SYS_PACCT",
                                           "SYS_ADMIN",
                                           "SYS_BOOT",
                                           "SYS_NICE",
                                           "SYS_RESOURCE",
                                           "SYS_TIME",
                                           "SYS_TTY_CONFIG",
                                           "MKNOD",
                                           "LEASE",
                                           "AUDIT_WRITE",
                                           "AUDIT_CONTROL",
                                           "SETFCAP",
                                           "MAC_OVERRIDE",
                                           "MAC_ADMIN",
                                           "SYSLOG",
                                           "WAKE_ALARM",
                                           "BLOCK_SUSPEND",
                                           "AUDIT_READ",
                                           "PERFMON",
                                           "BPF",
                                           "CHECKPOINT_RESTORE"};
  const int n = static_cast<int>(cap);
  if (n >= 0 && n < static_cast<int>(std::size(kNames))) return std::string("CAP_") + kNames[n];
  return "CAP_" + std::to_string(n);
}

namespace {

// True when the running kernel is at least major.minor.
bool KernelAtLeast(int want_major, int want_minor) {
  utsname u{};
  if (::uname(&u) != 0) {
    return false;
  }
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) {
    return false;
  }
  return major > want_major || (major == want_major && minor >= want_minor);
}

bool CapGet(__user_cap_data_struct (&data)[_LINUX_CAPABILITY_U32S_3]) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  return ::syscall(SYS_capget, &header, data) == 0;
}

bool InSet(uint32_t lo, uint32_t hi, int cap) { return ((cap < 32 ? lo : hi) >> (cap % 32)) & 1u; }

int LastCapability() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int last = 0;
  if (in >> last && last > 0 && last < 64) return last;
  return CAP_LAST_CAP;
}

}  // namespace

bool HasCapability(Capability cap) {
  // glibc has no capget wrapper and libcap is one more dependency for two words of data.
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (!CapGet(data)) return false;
  return InSet(data[0].effective, data[1].effective, static_cast<int>(cap));
}

bool KernelChargesBpfMemoryToCgroup() { return KernelAtLeast(5, 11); }

bool KernelNeedsBpfCapabilityForMapAccess() {
  if (KernelAtLeast(6, 5)) return false;
  std::ifstream in("/proc/sys/kernel/unprivileged_bpf_disabled");
  int disabled = 1;  // unreadable: assume the restrictive default
  in >> disabled;
  return disabled != 0;
}

std::vector<Capability> RuntimeCapabilities() {
  std::vector<Capability> caps = {Capability::kSysPtrace, Capability::kDacReadSearch};
  if (KernelNeedsBpfCapabilityForMapAccess()) caps.push_back(Capability::kBpf);
  return caps;
}

Result<CapabilityDrop> KeepOnlyCapabilities(const std::vector<Capability>& keep) {
  __user_cap_data_struct before[_LINUX_CAPABILITY_U32S_3] = {};
  if (!CapGet(before)) return ErrnoError(errno, "capget");
  uint64_t keep_mask = 0;
  for (Capability c : keep) keep_mask |= uint64_t{1} << static_cast<int>(c);
  const int last = LastCapability();

  CapabilityDrop result;
  // The bounding set first: dropping from it needs CAP_SETPCAP, which the capset below removes.
  if (InSet(before[0].effective, before[1].effective, static_cast<int>(Capability::kSetpcap))) {
    for (int cap = 0; cap <= last; ++cap) {
      if ((keep_mask >> cap) & 1u) continue;
      if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
          ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        return ErrnoError(errno, "prctl(PR_CAPBSET_DROP, " + std::to_string(cap) + ")");
      }
    }
    result.bounding_dropped = true;
  }
  // Ambient capabilities would survive an execve; EINVAL means the kernel has none (< 4.3).
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return ErrnoError(errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }

  __user_cap_data_struct after[_LINUX_CAPABILITY_U32S_3] = {};
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    const auto mask = static_cast<uint32_t>(keep_mask >> (32 * i));
    after[i].permitted = before[i].permitted & mask;
    after[i].effective = before[i].permitted & mask;
    after[i].inheritable = 0;
  }
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  if (::syscall(SYS_capset, &header, after) != 0) return ErrnoError(errno, "capset");

  __user_cap_data_struct now[_LINUX_CAPABILITY_U32S_3] = {};
  if (!CapGet(now)) return ErrnoError(errno, "capget");
  for (int cap = 0; cap <= last; ++cap) {
    const bool had = InSet(before[0].permitted, before[1].permitted, cap);
    const bool has = InSet(now[0].permitted, now[1].permitted, cap);
    if (has && !((keep_mask >> cap) & 1u)) {
      return InternalError("capability {} still permitted after capset", cap);
    }
    if (!had) continue;
    const std::string name = CapabilityName(static_cast<Capability>(cap));
    (has ? result.kept : result.dropped).push_back(name);
  }
  return result;
}

std::vector<Capability> RequiredCapabilities() {
  std::vector<Capability> caps = {Capability::kBpf, Capability::kPerfmon, Capability::kSysPtrace};
  // Before 5.11 BPF maps count against RLIMIT_MEMLOCK, which only CAP_SYS_RESOURCE can raise
  // far enough for the ring buffer; later kernels charge the memory cgroup instead.
  if (!KernelChargesBpfMemoryToCgroup()) {
    caps.push_back(Capability::kSysResource);
  }
  return caps;
}

Status CheckSamplerCapabilities() {
  std::vector<std::string> missing;
  for (Capability cap : RequiredCapabilities()) {
    if (!HasCapability(cap)) {
      missing.push_back(CapabilityName(cap));
    }
  }
  if (missing.empty()) {
    return OkStatus();
  }
  return FailedPrecondition("missing capabilities: {}; run as root or grant them",
                            common::Join(missing, ", "));
}

}  // namespace flamestream::bpf
