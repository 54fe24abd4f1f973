#include "flamestream/correlate/placement.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "flamestream/common/strings.h"

namespace flamestream::correlate {
namespace {

std::string HostKey(std::string_view cluster, std::string_view node, uint32_t pid) {
  return fmt::format("{}{}{}{}{}", cluster, '\0', node, '\0', pid);
}

std::string PairKey(std::string_view a, std::string_view b) {
  std::string key;
  key.reserve(a.size() + b.size() + 1);
  key.append(a);
  key.push_back('\0');
  key.append(b);
  return key;
}

void EraseValue(absl::flat_hash_map<std::string, std::vector<std::string>>& index,
                const std::string& key, const std::string& value) {
  auto it = index.find(key);
  if (it == index.end()) return;
  auto& v = it->second;
  v.erase(std::remove(v.begin(), v.end(), value), v.end());
  if (v.empty()) index.erase(it);
}

}  // namespace

void ProcessTable::Upsert(ProcessRecord record) {
  record.cluster = common::ToLower(record.cluster);
  record.node = common::ToLower(record.node);
  std::string key = HostKey(record.cluster, record.node, record.host_pid);
  auto it = by_host_.find(key);
  if (it != by_host_.end()) {
    Unindex(key, it->second);
    it->second = std::move(record);
  } else {
    it = by_host_.emplace(key, std::move(record)).first;
  }
  const ProcessRecord& r = it->second;
  if (!r.container_id.empty()) by_container_[PairKey(r.cluster, r.container_id)].push_back(key);
  if (!r.pod_uid.empty()) by_pod_[PairKey(r.cluster, r.pod_uid)].push_back(key);
}

bool ProcessTable::Remove(std::string_view cluster, std::string_view node, uint32_t host_pid) {
  std::string key = HostKey(common::ToLower(cluster), common::ToLower(node), host_pid);
  auto it = by_host_.find(key);
  if (it == by_host_.end()) return false;
  Unindex(key, it->second);
  by_host_.erase(it);
  return true;
}

void ProcessTable::Unindex(const std::string& host_key, const ProcessRecord& r) {
  if (!r.container_id.empty())
    EraseValue(by_container_, PairKey(r.cluster, r.container_id), host_key);
  if (!r.pod_uid.empty()) EraseValue(by_pod_, PairKey(r.cluster, r.pod_uid), host_key);
}

const ProcessRecord* ProcessTable::FindByHostPid(std::string_view cluster, std::string_view node,
                                                 uint32_t host_pid) const {
  auto it = by_host_.find(HostKey(common::ToLower(cluster), common::ToLower(node), host_pid));
  return it == by_host_.end() ? nullptr : &it->second;
}

std::vector<const ProcessRecord*> ProcessTable::Lookup(
    const absl::flat_hash_map<std::string, std::vector<std::string>>& index,
    const std::string& key) const {
  std::vector<const ProcessRecord*> out;
  auto it = index.find(key);
  if (it == index.end()) return out;
  for (const std::string& host_key : it->second) {
    auto r = by_host_.find(host_key);
    if (r != by_host_.end()) out.push_back(&r->second);
  }
  // Index order depends on arrival; sort so callers see a deterministic order.
  std::sort(out.begin(), out.end(), [](const ProcessRecord* a, const ProcessRecord* b) {
    return std::tie(a->node, a->host_pid) < std::tie(b->node, b->host_pid);
  });
  return out;
}

std::vector<const ProcessRecord*> ProcessTable::FindByContainer(std::string_view cluster,
                                                                std::string_view container_id,
                                                                uint32_t ns_pid) const {
  auto all = Lookup(by_container_, PairKey(common::ToLower(cluster), container_id));
  std::erase_if(all, [ns_pid](const ProcessRecord* r) { return r->ns_pid != ns_pid; });
  return all;
}

std::vector<const ProcessRecord*> ProcessTable::FindByPod(std::string_view cluster,
                                                          std::string_view pod_uid,
                                                          uint32_t ns_pid) const {
  auto all = Lookup(by_pod_, PairKey(common::ToLower(cluster), pod_uid));
  std::erase_if(all, [ns_pid](const ProcessRecord* r) { return r->ns_pid != ns_pid; });
  return all;
}

namespace {
std::vector<std::string> Nodes(const std::vector<const ProcessRecord*>& records) {
  std::vector<std::string> nodes;
  for (const ProcessRecord* r : records) nodes.push_back(r->node);
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  return nodes;
}
}  // namespace

std::vector<std::string> ProcessTable::NodesOfContainer(std::string_view cluster,
                                                        std::string_view container_id) const {
  return Nodes(Lookup(by_container_, PairKey(common::ToLower(cluster), container_id)));
}

std::vector<std::string> ProcessTable::NodesOfPod(std::string_view cluster,
                                                  std::string_view pod_uid) const {
  return Nodes(Lookup(by_pod_, PairKey(common::ToLower(cluster), pod_uid)));
}

Placement SpanPlacer::Place(const SpanResource& res, int64_t span_start_ns) {
  Placement p;
  const std::string cluster = common::ToLower(
      res.cluster.empty() ? std::string_view(config_.default_cluster) : res.cluster);

  // Node.
  std::string node;
  if (!res.k8s_node_name.empty()) {
    node = common::ToLower(res.k8s_node_name);
  } else if (!res.container_id.empty() || !res.pod_uid.empty()) {
    const bool by_container = !res.container_id.empty();
    std::vector<std::string> nodes = by_container
                                         ? table_.NodesOfContainer(cluster, res.container_id)
                                         : table_.NodesOfPod(cluster, res.pod_uid);
    if (nodes.empty() && by_container && !res.pod_uid.empty()) {
      nodes = table_.NodesOfPod(cluster, res.pod_uid);
    }
    if (nodes.size() > 1) {
      p.reason = UnplacedReason::kAmbiguousNode;
      Count(p);
      return p;
    }
    if (nodes.empty()) {
      p.reason = by_container ? UnplacedReason::kUnknownContainer : UnplacedReason::kUnknownPod;
      Count(p);
      return p;
    }
    node = nodes.front();
  } else if (!res.host_name.empty()) {
    node = common::ToLower(res.host_name);
  } else {
    p.reason = UnplacedReason::kNoNodeIdentity;
    Count(p);
    return p;
  }
  p.placed_ok = true;
  p.node = common::NodeKey::Of(cluster, node);
  p.node_key = p.node.str();

  // Process.
  auto started_after_span = [&](const ProcessRecord& r) {
    return r.start_time_ns != 0 && span_start_ns != 0 &&
           r.start_time_ns > span_start_ns + config_.start_time_tolerance_ns;
  };
  auto on_node = [&](std::vector<const ProcessRecord*> rs) {
    std::erase_if(rs, [&](const ProcessRecord* r) { return r->node != node; });
    return rs;
  };
  if (res.pid == 0) {
    p.process = ProcessResolution::kNoPid;
  } else if (!res.container_id.empty()) {
    auto rs = on_node(table_.FindByContainer(cluster, res.container_id, res.pid));
    if (rs.empty()) {
      p.process = ProcessResolution::kContainerProcessUnknown;
    } else if (started_after_span(*rs.front())) {
      p.process = ProcessResolution::kPidReused;
    } else {
      p.process = ProcessResolution::kResolved;  // (container id, ns pid) is unique on a node
      p.host_pid = rs.front()->host_pid;
    }
  } else if (!res.pod_uid.empty()) {
    auto rs = on_node(table_.FindByPod(cluster, res.pod_uid, res.pid));
    if (rs.empty()) {
      p.process = ProcessResolution::kPodProcessUnknown;
    } else if (rs.size() > 1) {
      p.process = ProcessResolution::kAmbiguousPodProcess;
    } else if (started_after_span(*rs.front())) {
      p.process = ProcessResolution::kPidReused;
    } else {
      p.process = ProcessResolution::kResolved;
      p.host_pid = rs.front()->host_pid;
    }
  } else {
    const ProcessRecord* r = table_.FindByHostPid(cluster, node, res.pid);
    if (r != nullptr && !r->container_id.empty() && r->ns_pid != r->host_pid) {
      p.process = ProcessResolution::kPidNamespaceMismatch;
    } else if (r != nullptr && started_after_span(*r)) {
      p.process = ProcessResolution::kPidReused;
    } else {
      // Not in the table yet is fine: the agent publishes a process when it first samples it,
      // which may be after the span, and a host process's pid is its host pid.
      p.process = ProcessResolution::kResolved;
      p.host_pid = res.pid;
    }
  }
  Count(p);
  return p;
}

void SpanPlacer::Count(const Placement& p) {
  if (!p.placed()) {
    switch (p.reason) {
      case UnplacedReason::kNoNodeIdentity:
        ++counters_.unplaced_no_node_identity;
        break;
      case UnplacedReason::kUnknownContainer:
        ++counters_.unplaced_unknown_container;
        break;
      case UnplacedReason::kUnknownPod:
        ++counters_.unplaced_unknown_pod;
        break;
      case UnplacedReason::kAmbiguousNode:
        ++counters_.unplaced_ambiguous_node;
        break;
    }
    return;
  }
  ++counters_.placed;
  switch (p.process) {
    case ProcessResolution::kResolved:
      ++counters_.process_resolved;
      break;
    case ProcessResolution::kNoPid:
      ++counters_.process_no_pid;
      break;
    case ProcessResolution::kContainerProcessUnknown:
      ++counters_.process_container_unknown;
      break;
    case ProcessResolution::kPodProcessUnknown:
      ++counters_.process_pod_unknown;
      break;
    case ProcessResolution::kAmbiguousPodProcess:
      ++counters_.process_pod_ambiguous;
      break;
    case ProcessResolution::kPidNamespaceMismatch:
      ++counters_.process_pid_namespace_mismatch;
      break;
    case ProcessResolution::kPidReused:
      ++counters_.process_pid_reused;
      break;
  }
}

std::string_view UnplacedReasonName(UnplacedReason reason) {
  switch (reason) {
    case UnplacedReason::kNoNodeIdentity:
      return "no_node_identity";
    case UnplacedReason::kUnknownContainer:
      return "unknown_container";
    case UnplacedReason::kUnknownPod:
      return "unknown_pod";
    case UnplacedReason::kAmbiguousNode:
      return "ambiguous_node";
  }
  return "unknown";
}

std::string_view ProcessResolutionName(ProcessResolution resolution) {
  switch (resolution) {
    case ProcessResolution::kResolved:
      return "resolved";
    case ProcessResolution::kNoPid:
      return "no_pid";
    case ProcessResolution::kContainerProcessUnknown:
      return "container_process_unknown";
    case ProcessResolution::kPodProcessUnknown:
      return "pod_process_unknown";
    case ProcessResolution::kAmbiguousPodProcess:
      return "ambiguous_pod_process";
    case ProcessResolution::kPidNamespaceMismatch:
      return "pid_namespace_mismatch";
    case ProcessResolution::kPidReused:
      return "pid_reused";
  }
  return "unknown";
}

}  // namespace flamestream::correlate
