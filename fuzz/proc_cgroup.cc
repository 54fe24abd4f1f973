// /proc/<pid>/cgroup (libs/proc ParseCgroup, ParseCgroupPath): container id, runtime and pod
// uid, as the agent reads them for every process (docker, containerd, cri-o, podman, systemd
// slices, cgroup v1 and v2).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/proc/cgroup.h"
#include "fuzz_check.h"

namespace proc = flamestream::proc;

namespace {

void CheckInfo(const proc::CgroupInfo& info) {
  FS_FUZZ_CHECK(info.version >= 0 && info.version <= 2, "version %d", info.version);
  FS_FUZZ_CHECK(info.pod_uid.empty() || info.pod_uid.size() == 36, "pod uid \"%s\"",
                info.pod_uid.c_str());
  FS_FUZZ_CHECK(info.pod_uid.find('_') == std::string::npos, "pod uid keeps '_'");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const proc::CgroupInfo info = proc::ParseCgroup(text);
  CheckInfo(info);
  if (info.version == 0) {
    FS_FUZZ_CHECK(info.container_id.empty() && info.path.empty(), "no line, yet a result");
  }
  const proc::CgroupInfo path = proc::ParseCgroupPath(text);
  CheckInfo(path);
  FS_FUZZ_CHECK(path.path == text, "ParseCgroupPath keeps the path");
  return 0;
}
