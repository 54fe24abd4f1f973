#include "flamestream/proc/cgroup.h"

#include <gtest/gtest.h>

namespace flamestream::proc {
namespace {

constexpr const char* kId = "3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";
constexpr const char* kHostId = "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";

std::string S(const std::string& s) {
  std::string out = s;
  for (size_t at; (at = out.find("<ID>")) != std::string::npos;) out.replace(at, 4, kId);
  for (size_t at; (at = out.find("<HOST>")) != std::string::npos;) out.replace(at, 6, kHostId);
  return out;
}

TEST(ParseCgroup, RealWorldFormats) {
  struct Case {
    const char* name;
    std::string content;
    std::string container_id;
    std::string runtime;
    std::string pod_uid;
    int version;
  };
  const Case cases[] = {
      {"docker cgroupfs v1",
       S("12:pids:/docker/<ID>\n11:memory:/docker/<ID>\n1:name=systemd:/docker/<ID>\n"), kId,
       "docker", "", 1},
      {"docker systemd v2", S("0::/system.slice/docker-<ID>.scope\n"), kId, "docker", "", 2},
      {"k8s containerd systemd v2",
       S("0::/kubepods.slice/kubepods-burstable.slice/"
         "kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/"
         "cri-containerd-<ID>.scope\n"),
       kId, "containerd", "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", 2},
      {"k8s cgroupfs v1",
       S("11:cpuset:/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/<ID>\n"
         "10:memory:/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/<ID>\n"),
       kId, "", "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", 1},
      {"k8s guaranteed (no qos slice)",
       S("0::/kubepods.slice/kubepods-pod0a1b2c3d_0000_1111_2222_333344445555.slice/"
         "cri-containerd-<ID>.scope\n"),
       kId, "containerd", "0a1b2c3d-0000-1111-2222-333344445555", 2},
      {"cri-o v2",
       S("0::/kubepods.slice/kubepods-besteffort.slice/"
         "kubepods-besteffort-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/crio-<ID>.scope\n"),
       kId, "cri-o", "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", 2},
      {"cri-o conmon is not the container",
       S("0::/kubepods.slice/kubepods-besteffort.slice/"
         "kubepods-besteffort-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/"
         "crio-conmon-<ID>.scope\n"),
       "", "", "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", 2},
      {"containerd systemd driver on v1",
       S("4:memory:/system.slice/containerd.service/"
         "kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice:cri-containerd:<ID>\n"),
       kId, "containerd", "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", 1},
      {"podman rootless",
       S("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-<ID>.scope/"
         "container\n"),
       kId, "podman", "", 2},
      {"kind: innermost container wins",
       S("0::/system.slice/docker-<HOST>.scope/kubelet.slice/kubelet-kubepods.slice/"
         "kubelet-kubepods-besteffort.slice/"
         "kubelet-kubepods-besteffort-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/"
         "cri-containerd-<ID>.scope\n"),
       kId, "containerd", "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901", 2},
      {"systemd user session", "0::/user.slice/user-1000.slice/session-2.scope\n", "", "", "", 2},
      {"systemd service", "0::/system.slice/nginx.service\n", "", "", "", 2},
      {"hybrid: v1 names the container, v2 is root",
       S("12:memory:/docker/<ID>\n1:name=systemd:/docker/<ID>\n0::/\n"), kId, "docker", "", 1},
      {"root v2", "0::/\n", "", "", "", 2},
      {"empty", "", "", "", "", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CgroupInfo info = ParseCgroup(c.content);
    EXPECT_EQ(info.container_id, c.container_id);
    EXPECT_EQ(info.runtime, c.runtime);
    EXPECT_EQ(info.pod_uid, c.pod_uid);
    EXPECT_EQ(info.version, c.version);
  }
}

TEST(ParseCgroup, KeepsThePathOfTheChosenLine) {
  EXPECT_EQ(ParseCgroup("0::/system.slice/nginx.service\n").path, "/system.slice/nginx.service");
  EXPECT_EQ(ParseCgroup(S("3:cpu:/\n1:name=systemd:/system.slice/x.service\n")).path,
            "/system.slice/x.service");
}

}  // namespace
}  // namespace flamestream::proc
