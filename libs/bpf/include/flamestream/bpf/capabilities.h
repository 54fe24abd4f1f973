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
  kDacReadSearch = 2,
  kSetpcap = 8,
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

// True on kernels before 6.5 with kernel.unprivileged_bpf_disabled set, where every bpf()
// command (map lookups and updates on fds already open included) needs CAP_BPF; from 6.5 only
// loading programs and creating maps do.
bool KernelNeedsBpfCapabilityForMapAccess();

// Capabilities the agent still needs once its programs are loaded and attached: CAP_SYS_PTRACE
// (other processes' /proc maps, /proc/<pid>/root), CAP_DAC_READ_SEARCH (binaries that only
// their owner may read, for build ids), and CAP_BPF where KernelNeedsBpfCapabilityForMapAccess.
std::vector<Capability> RuntimeCapabilities();

// What changed when capabilities were dropped (names like "CAP_BPF").
struct CapabilityDrop {
  std::vector<std::string> kept;     // in the permitted set before and after
  std::vector<std::string> dropped;  // in the permitted set before, not after
  bool bounding_dropped = false;     // false without CAP_SETPCAP: only the bounding set stays
};

// Reduces the calling thread's permitted and effective sets to `keep` (those of them it holds),
// clears the inheritable and ambient sets and, with CAP_SETPCAP, drops everything else from the
// bounding set too, so a program the agent runs (as root) cannot regain them. Capabilities are
// per thread on Linux: call it while the process has one thread (Spec::before_threads); threads
// created afterwards inherit the reduced sets. Irreversible.
Result<CapabilityDrop> KeepOnlyCapabilities(const std::vector<Capability>& keep);

}  // namespace flamestream::bpf
