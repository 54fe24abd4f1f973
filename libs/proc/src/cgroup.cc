#include "flamestream/proc/cgroup.h"

#include <array>
#include <regex>
#include <vector>

#include "flamestream/common/strings.h"

namespace flamestream::proc {
namespace {

bool IsHex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// A full 64-character container id. (Shorter hex strings appear in unrelated unit names.)
bool IsContainerId(std::string_view s) { return s.size() == 64 && IsHex(s); }

struct Prefix {
  std::string_view text;
  std::string_view runtime;  // "" = a monitor process (conmon), not inside the container
};
constexpr std::array<Prefix, 7> kPrefixes = {{
    {"crio-conmon-", ""},
    {"libpod-conmon-", ""},
    {"cri-containerd-", "containerd"},
    {"crio-", "cri-o"},
    {"docker-", "docker"},
    {"libpod-", "podman"},
    {"containerd-", "containerd"},
}};

// Id and runtime named by one path component, if any.
bool ParseComponent(std::string_view c, std::string_view parent, CgroupInfo* out) {
  if (c.ends_with(".scope")) {
    c.remove_suffix(6);
  }
  // containerd's systemd driver on cgroup v1: "<slice>:cri-containerd:<id>".
  if (const size_t colon = c.rfind(':'); colon != std::string_view::npos) {
    std::string_view id = c.substr(colon + 1);
    std::string_view head = c.substr(0, colon);
    const size_t colon2 = head.rfind(':');
    std::string_view runtime = colon2 == std::string_view::npos ? head : head.substr(colon2 + 1);
    if (IsContainerId(id)) {
      out->container_id = std::string(id);
      out->runtime = runtime == "cri-containerd" ? "containerd"
                     : runtime == "crio"         ? "cri-o"
                     : runtime == "docker"       ? "docker"
                                                 : "";
      return true;
    }
  }
  for (const Prefix& p : kPrefixes) {
    if (c.starts_with(p.text) && IsContainerId(c.substr(p.text.size()))) {
      if (p.runtime.empty()) {
        return false;
      }
      out->container_id = std::string(c.substr(p.text.size()));
      out->runtime = std::string(p.runtime);
      return true;
    }
  }
  if (IsContainerId(c)) {  // cgroupfs driver: the bare id under /docker or /kubepods/...
    out->container_id = std::string(c);
    out->runtime = parent == "docker" ? "docker" : parent == "crio" ? "cri-o" : "";
    return true;
  }
  return false;
}

}  // namespace

CgroupInfo ParseCgroupPath(std::string_view path) {
  CgroupInfo info;
  info.path = std::string(path);
  std::vector<std::string> parts = common::SplitNonEmpty(path, '/');
  size_t id_index = parts.size();
  // Innermost first: nested setups (kind, Docker-in-Docker) put the real container last.
  for (size_t i = parts.size(); i-- > 0;) {
    if (ParseComponent(parts[i], i > 0 ? std::string_view(parts[i - 1]) : "", &info)) {
      id_index = i;
      break;
    }
  }
  // "pod<uid>" with dashes (cgroupfs) or underscores (systemd slices), at or above the container.
  static const std::regex kPod(
      "pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?![0-9a-f])");
  const size_t limit = id_index == parts.size() ? parts.size() : id_index + 1;
  for (size_t i = limit; i-- > 0;) {
    std::smatch m;
    if (std::regex_search(parts[i], m, kPod)) {
      info.pod_uid = common::ReplaceAll(m[1].str(), "_", "-");
      break;
    }
  }
  return info;
}

CgroupInfo ParseCgroup(std::string_view content) {
  struct Line {
    bool v2;
    bool systemd;
    std::string path;
  };
  std::vector<Line> lines;
  for (const std::string& raw : common::Split(content, '\n')) {
    const size_t c1 = raw.find(':');
    const size_t c2 = c1 == std::string::npos ? std::string::npos : raw.find(':', c1 + 1);
    if (c2 == std::string::npos) {
      continue;
    }
    std::string_view hierarchy(raw.data(), c1);
    std::string_view controllers(raw.data() + c1 + 1, c2 - c1 - 1);
    std::string path = raw.substr(c2 + 1);
    if (path.empty() || path.front() != '/' || !common::ParseInt<uint32_t>(hierarchy).ok()) {
      continue;
    }
    lines.push_back({hierarchy == "0" && controllers.empty(), controllers == "name=systemd",
                     std::move(path)});
  }
  if (lines.empty()) {
    return {};
  }
  const bool only_v2 = lines.size() == 1 && lines[0].v2;
  // The line that names a container wins, v2 first (hybrid hosts have both).
  for (bool want_v2 : {true, false}) {
    for (const Line& l : lines) {
      if (l.v2 != want_v2) continue;
      CgroupInfo info = ParseCgroupPath(l.path);
      if (!info.container_id.empty()) {
        info.version = l.v2 ? 2 : 1;
        return info;
      }
    }
  }
  const Line* pick = &lines[0];
  for (const Line& l : lines) {
    if (l.v2 && (only_v2 || l.path != "/")) {
      pick = &l;
      break;
    }
    if (l.systemd) {
      pick = &l;
    }
  }
  CgroupInfo info = ParseCgroupPath(pick->path);
  info.version = only_v2 ? 2 : 1;
  return info;
}

}  // namespace flamestream::proc
