#include "flamestream/bpf/capabilities.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

#include "flamestream/common/strings.h"

namespace flamestream::bpf {

std::string CapabilityName(Capability cap) {
  switch (cap) {
    case Capability::kSysPtrace:
      return "CAP_SYS_PTRACE";
    case Capability::kSysAdmin:
      return "CAP_SYS_ADMIN";
    case Capability::kSysResource:
      return "CAP_SYS_RESOURCE";
    case Capability::kSyslog:
      return "CAP_SYSLOG";
    case Capability::kPerfmon:
      return "CAP_PERFMON";
    case Capability::kBpf:
      return "CAP_BPF";
    case Capability::kCheckpointRestore:
      return "CAP_CHECKPOINT_RESTORE";
  }
  return "CAP_" + std::to_string(static_cast<int>(cap));
}

bool HasCapability(Capability cap) {
  // glibc has no capget wrapper and libcap is one more dependency for two words of data.
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return false;
  }
  const int n = static_cast<int>(cap);
  return (data[n / 32].effective & (1u << (n % 32))) != 0;
}

bool KernelChargesBpfMemoryToCgroup() {
  utsname u{};
  if (::uname(&u) != 0) {
    return false;
  }
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) {
    return false;
  }
  return major > 5 || (major == 5 && minor >= 11);
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
