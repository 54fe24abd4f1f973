// Container identity from /proc/<pid>/cgroup.
//
//   CgroupInfo c = ParseCgroup(
//       "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c_3d4e.slice/"
//       "cri-containerd-3f1c...e9.scope\n");
//   // c.container_id = "3f1c...e9", c.runtime = "containerd", c.pod_uid = "1b2c-3d4e",
//   // c.version = 2
//
// Handles docker (cgroupfs and systemd drivers), containerd (bare and Kubernetes), CRI-O,
// podman/libpod, systemd slices, cgroup v1 (many lines) and v2 ("0::/path").
#pragma once

#include <string>
#include <string_view>

namespace flamestream::proc {

struct CgroupInfo {
  std::string path;          // v2 path, else the v1 path that named a container, else the first
  std::string container_id;  // 64 hex chars (or a runtime's own id), empty outside containers
  std::string runtime;       // "docker", "containerd", "cri-o", "podman", or "" when unknown
  std::string pod_uid;       // Kubernetes pod uid with dashes, when the path has it
  int version = 0;           // 1 or 2; 0 when the content had no valid line
};

CgroupInfo ParseCgroup(std::string_view content);

// Container id, runtime and pod uid from one cgroup path.
CgroupInfo ParseCgroupPath(std::string_view path);

}  // namespace flamestream::proc
