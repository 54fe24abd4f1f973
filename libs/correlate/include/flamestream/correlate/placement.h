// SpanPlacer: the span router's rule for which node (Kafka key) and which host process a span
// belongs to (ARCHITECTURE.md, "Identity").
//
//   ProcessTable table;                        // fed from flamestream.processes.v1
//   table.Upsert({.cluster = "prod", .node = "node-a", .host_pid = 4242, .ns_pid = 7,
//                 .container_id = "c0ffee", .pod_uid = "", .start_time_ns = 0});
//   SpanPlacer placer(table, {.default_cluster = "prod"});
//   Placement p = placer.Place({.container_id = "c0ffee", .pid = 7}, span_start_ns);
//   if (p.placed()) producer.Send(p.node_key, ...);   // p.node_key == "prod/node-a", p.host_pid == 4242
//
// The rule, in order:
//   node   1. k8s.node.name;
//          2. else, when the span names a container or pod (container.id, k8s.pod.uid), the
//             node that process table records for it. host.name is NOT used for such spans:
//             inside a container or pod it is the container's or pod's host name, not the
//             node's, and would place the span on a key no agent writes to;
//          3. else host.name.
//          Node and cluster are lower-cased; the key is "<cluster>/<node>", the cluster coming
//          from k8s.cluster.name, else the configured default.
//   process (the host pid the samples carry):
//          with container.id:  the table's process with (container id, namespace pid ==
//                              process.pid) on that node;
//          else with k8s.pod.uid: the one process with (pod uid, namespace pid) on that node
//                              (several, e.g. one per container, is ambiguous);
//          else:               process.pid is the host pid, unless the table records that host
//                              pid as a containerized process whose namespace pid differs (a
//                              containerized process would not report its host pid).
//          A process whose recorded start time is after the span's start is a reused pid.
// A span with a node but no resolved process is still placed (host_pid 0): it can name samples
// that carry its ids. Spans without a node are counted by reason and never guessed.
// What an application must send: service.name, process.pid, and either k8s.node.name (downward
// API) or, outside Kubernetes, host.name equal to the node's host name; containerized
// applications also container.id (the container resource detector) or k8s.pod.uid.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <absl/container/flat_hash_map.h>

#include "flamestream/common/identity.h"

namespace flamestream::correlate {

// One record of flamestream.processes.v1.
struct ProcessRecord {
  std::string cluster;
  std::string node;
  uint32_t host_pid = 0;
  uint32_t ns_pid = 0;        // pid inside the process's pid namespace (== host_pid on the host)
  std::string container_id;   // empty for host processes
  std::string pod_uid;        // empty outside Kubernetes
  int64_t start_time_ns = 0;  // Unix epoch ns; 0 when unknown
};

// The compacted processes topic as a lookup table. Not thread-safe.
class ProcessTable {
 public:
  // Inserts or replaces the record for (cluster, node, host pid). Names are lower-cased.
  void Upsert(ProcessRecord record);
  // Removes the record for (cluster, node, host pid) (a tombstone); false if absent.
  bool Remove(std::string_view cluster, std::string_view node, uint32_t host_pid);

  const ProcessRecord* FindByHostPid(std::string_view cluster, std::string_view node,
                                     uint32_t host_pid) const;
  // Records with this container (or pod) and namespace pid, on any node.
  std::vector<const ProcessRecord*> FindByContainer(std::string_view cluster,
                                                    std::string_view container_id,
                                                    uint32_t ns_pid) const;
  std::vector<const ProcessRecord*> FindByPod(std::string_view cluster, std::string_view pod_uid,
                                              uint32_t ns_pid) const;
  // Every node the container (or pod) has a process on.
  std::vector<std::string> NodesOfContainer(std::string_view cluster,
                                            std::string_view container_id) const;
  std::vector<std::string> NodesOfPod(std::string_view cluster, std::string_view pod_uid) const;

  [[nodiscard]] size_t size() const { return by_host_.size(); }

 private:
  // Keys are components joined with '\0' (which no name contains).
  absl::flat_hash_map<std::string, ProcessRecord> by_host_;               // cluster,node,pid
  absl::flat_hash_map<std::string, std::vector<std::string>> by_container_;  // cluster,cid -> host keys
  absl::flat_hash_map<std::string, std::vector<std::string>> by_pod_;        // cluster,pod -> host keys

  void Unindex(const std::string& host_key, const ProcessRecord& r);
  std::vector<const ProcessRecord*> Lookup(
      const absl::flat_hash_map<std::string, std::vector<std::string>>& index,
      const std::string& key) const;
};

// The identifying resource/span attributes of one span. Views need only outlive Place().
struct SpanResource {
  std::string_view cluster;        // k8s.cluster.name; empty -> SpanPlacerConfig::default_cluster
  std::string_view k8s_node_name;  // k8s.node.name
  std::string_view host_name;      // host.name
  std::string_view container_id;   // container.id
  std::string_view pod_uid;        // k8s.pod.uid
  uint32_t pid = 0;                // process.pid; 0 when absent
};

enum class UnplacedReason : uint8_t {
  kNoNodeIdentity,    // no k8s.node.name, host.name, container.id or k8s.pod.uid
  kUnknownContainer,  // container.id given (and no k8s.node.name), not in the process table
  kUnknownPod,        // k8s.pod.uid given (no container.id / node name), not in the table
  kAmbiguousNode,     // the container or pod appears on more than one node
};

enum class ProcessResolution : uint8_t {
  kResolved,            // host_pid is set
  kNoPid,               // no process.pid attribute
  kContainerProcessUnknown,  // container.id given; no (container, ns pid) on this node
  kPodProcessUnknown,   // k8s.pod.uid given; no (pod, ns pid) on this node
  kAmbiguousPodProcess, // several (pod, ns pid) processes on this node
  kPidNamespaceMismatch,  // host pid is a containerized process with another namespace pid
  kPidReused,           // the matching process started after the span
};

struct Placement {
  bool placed_ok = false;
  UnplacedReason reason = UnplacedReason::kNoNodeIdentity;  // when !placed_ok
  common::NodeKey node;  // when placed
  std::string node_key;  // node.str(), "<cluster>/<node>": the keyed spans' record key
  ProcessResolution process = ProcessResolution::kNoPid;
  uint32_t host_pid = 0;  // when process == kResolved

  [[nodiscard]] bool placed() const { return placed_ok; }
};

// Counters of the placement rule (plain integers; the stage exports them as metrics).
struct PlacementCounters {
  uint64_t placed = 0;
  uint64_t unplaced_no_node_identity = 0;
  uint64_t unplaced_unknown_container = 0;
  uint64_t unplaced_unknown_pod = 0;
  uint64_t unplaced_ambiguous_node = 0;
  uint64_t process_resolved = 0;
  uint64_t process_no_pid = 0;
  uint64_t process_container_unknown = 0;
  uint64_t process_pod_unknown = 0;
  uint64_t process_pod_ambiguous = 0;
  uint64_t process_pid_namespace_mismatch = 0;
  uint64_t process_pid_reused = 0;
};

struct SpanPlacerConfig {
  // Cluster for spans without k8s.cluster.name (the router's own cluster).
  std::string default_cluster = "default";
  // Tolerated difference between a process's recorded start time and a span's start (clocks
  // of the agent and of the application's runtime differ a little).
  int64_t start_time_tolerance_ns = 1'000'000'000;
};

class SpanPlacer {
 public:
  // `table` must outlive the placer; it may change between calls.
  SpanPlacer(const ProcessTable& table, SpanPlacerConfig config)
      : table_(table), config_(std::move(config)) {}

  // Places one span. `span_start_ns` is used only for the pid-reuse check.
  Placement Place(const SpanResource& resource, int64_t span_start_ns);

  [[nodiscard]] const PlacementCounters& counters() const { return counters_; }

 private:
  void Count(const Placement& p);

  const ProcessTable& table_;
  SpanPlacerConfig config_;
  PlacementCounters counters_;
};

std::string_view UnplacedReasonName(UnplacedReason reason);
std::string_view ProcessResolutionName(ProcessResolution resolution);

}  // namespace flamestream::correlate
