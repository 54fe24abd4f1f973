// Which Linux capabilities this process holds, and whether they are enough to sample.
//
//   if (Status s = CheckSamplerCapabilities(); !s.ok()) {
//     log::Error("cannot sample", {{"error", s}});   // names every missing capability
//     return 1;
//   }
//   bool stats = HasCapability(Capability::kSysAdmin);   // optional extras degrade, not fail
#pragma once

#include <string>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::bpf {

// Values are the kernel's capability numbers (linux/capability.h).
enum class Capability : int {
  kSysPtrace = 19,
  kSysAdmin = 21,
  kSysResource = 24,
  kSyslog = 34,
  kPerfmon = 38,
  kBpf = 39,
  kCheckpointRestore = 40,
};

std::string CapabilityName(Capability cap);  // "CAP_BPF"

// True when the capability is in the effective set (root normally has all).
bool HasCapability(Capability cap);

// Capabilities the sampler cannot run without: CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE (read other
// processes' /proc maps and memory), and CAP_SYS_RESOURCE on kernels before 5.11 (raise
// RLIMIT_MEMLOCK for the maps; later kernels charge BPF memory to the cgroup).
std::vector<Capability> RequiredCapabilities();

// True on kernels >= 5.11, where BPF memory is cgroup-accounted instead of RLIMIT_MEMLOCK.
bool KernelChargesBpfMemoryToCgroup();

// OK, or FailedPrecondition("missing capabilities: CAP_BPF, CAP_PERFMON; run as root or grant
// them") naming exactly the missing ones.
Status CheckSamplerCapabilities();

}  // namespace flamestream::bpf
