#include "flamestream/correlate/placement.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace flamestream::correlate {
namespace {

ProcessTable Table() {
  ProcessTable t;
  // A host process on node-a.
  t.Upsert({.cluster = "prod", .node = "Node-A", .host_pid = 100, .ns_pid = 100});
  // A container on node-a: host pid 4242 is pid 7 inside it.
  t.Upsert({.cluster = "prod", .node = "node-a", .host_pid = 4242, .ns_pid = 7,
            .container_id = "c0ffee", .pod_uid = "pod-1", .start_time_ns = 1'000'000'000'000});
  // A second container of the same pod, also pid 7 inside (no shared pid namespace).
  t.Upsert({.cluster = "prod", .node = "node-a", .host_pid = 4300, .ns_pid = 7,
            .container_id = "beef", .pod_uid = "pod-1"});
  // A container on node-b.
  t.Upsert({.cluster = "prod", .node = "node-b", .host_pid = 555, .ns_pid = 1,
            .container_id = "cafe", .pod_uid = "pod-2"});
  // The same container id seen on two nodes (a bad table): ambiguous.
  t.Upsert({.cluster = "prod", .node = "node-c", .host_pid = 9, .ns_pid = 1, .container_id = "dup"});
  t.Upsert({.cluster = "prod", .node = "node-d", .host_pid = 9, .ns_pid = 1, .container_id = "dup"});
  return t;
}

TEST(SpanPlacer, PlacesSpansByTheDocumentedRule) {
  struct Case {
    std::string name;
    SpanResource res;
    bool placed;
    UnplacedReason reason;  // when !placed
    std::string key;
    ProcessResolution process;
    uint32_t host_pid;
  };
  constexpr int64_t kSpanStart = 2'000'000'000'000;
  const std::vector<Case> cases = {
      {"k8s node name wins over host.name", {.k8s_node_name = "NODE-A", .host_name = "pod-xyz", .pid = 100},
       true, {}, "prod/node-a", ProcessResolution::kResolved, 100},
      {"host.name when no node name or container", {.host_name = "Node-B.", .pid = 77},
       true, {}, "prod/node-b.", ProcessResolution::kResolved, 77},
      {"cluster attribute overrides the default", {.cluster = "Staging", .host_name = "h1", .pid = 1},
       true, {}, "staging/h1", ProcessResolution::kResolved, 1},
      {"container id finds node and host pid", {.host_name = "c0ffee-hostname", .container_id = "c0ffee", .pid = 7},
       true, {}, "prod/node-a", ProcessResolution::kResolved, 4242},
      {"container id with node name: host pid from (container, ns pid)",
       {.k8s_node_name = "node-a", .container_id = "c0ffee", .pid = 7},
       true, {}, "prod/node-a", ProcessResolution::kResolved, 4242},
      {"container on another node than k8s.node.name: placed, process unknown",
       {.k8s_node_name = "node-b", .container_id = "c0ffee", .pid = 7},
       true, {}, "prod/node-b", ProcessResolution::kContainerProcessUnknown, 0},
      {"unknown container is not guessed from host.name", {.host_name = "x", .container_id = "nope", .pid = 7},
       false, UnplacedReason::kUnknownContainer, "", {}, 0},
      {"pod uid alone: ambiguous process (two containers with ns pid 7)", {.pod_uid = "pod-1", .pid = 7},
       true, {}, "prod/node-a", ProcessResolution::kAmbiguousPodProcess, 0},
      {"pod uid alone, unique process", {.pod_uid = "pod-2", .pid = 1},
       true, {}, "prod/node-b", ProcessResolution::kResolved, 555},
      {"pod uid alone, no such ns pid", {.pod_uid = "pod-2", .pid = 2},
       true, {}, "prod/node-b", ProcessResolution::kPodProcessUnknown, 0},
      {"unknown pod", {.pod_uid = "pod-9", .pid = 1}, false, UnplacedReason::kUnknownPod, "", {}, 0},
      {"container on two nodes", {.container_id = "dup", .pid = 1}, false, UnplacedReason::kAmbiguousNode, "", {}, 0},
      {"nothing identifying", {.pid = 1}, false, UnplacedReason::kNoNodeIdentity, "", {}, 0},
      {"no pid: placed, process unresolved", {.k8s_node_name = "node-a"},
       true, {}, "prod/node-a", ProcessResolution::kNoPid, 0},
      {"host pid that is a container's: a containerized app reports its ns pid",
       {.k8s_node_name = "node-a", .pid = 4242},
       true, {}, "prod/node-a", ProcessResolution::kPidNamespaceMismatch, 0},
      {"host pid not yet in the table is trusted", {.k8s_node_name = "node-a", .pid = 31337},
       true, {}, "prod/node-a", ProcessResolution::kResolved, 31337},
  };
  const ProcessTable table = Table();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SpanPlacer placer(table, {.default_cluster = "Prod"});
    const Placement p = placer.Place(c.res, kSpanStart);
    ASSERT_EQ(p.placed(), c.placed);
    if (!c.placed) {
      EXPECT_EQ(UnplacedReasonName(p.reason), UnplacedReasonName(c.reason));
      EXPECT_EQ(p.node_key, "");
      continue;
    }
    EXPECT_EQ(p.node_key, c.key);
    EXPECT_EQ(ProcessResolutionName(p.process), ProcessResolutionName(c.process));
    EXPECT_EQ(p.host_pid, c.host_pid);
  }
}

TEST(SpanPlacer, DetectsPidReuse) {
  const ProcessTable table = Table();
  SpanPlacer placer(table, {.default_cluster = "prod", .start_time_tolerance_ns = 1000});
  // The container process started at 1e12 ns; a span that started well before is another
  // process that had the same pids.
  const Placement p = placer.Place({.container_id = "c0ffee", .pid = 7}, 1'000'000'000'000 - 5000);
  ASSERT_TRUE(p.placed());
  EXPECT_EQ(p.process, ProcessResolution::kPidReused);
  EXPECT_EQ(placer.counters().process_pid_reused, 1u);
}

TEST(SpanPlacer, CountsEveryOutcomeByReason) {
  const ProcessTable table = Table();
  SpanPlacer placer(table, {.default_cluster = "prod"});
  (void)placer.Place({.k8s_node_name = "n", .pid = 1}, 0);
  (void)placer.Place({.pid = 1}, 0);
  (void)placer.Place({.pid = 1}, 0);
  (void)placer.Place({.container_id = "nope"}, 0);
  (void)placer.Place({.pod_uid = "nope"}, 0);
  (void)placer.Place({.container_id = "dup"}, 0);
  (void)placer.Place({.k8s_node_name = "n"}, 0);
  const PlacementCounters& c = placer.counters();
  EXPECT_EQ(c.placed, 2u);
  EXPECT_EQ(c.process_resolved, 1u);
  EXPECT_EQ(c.process_no_pid, 1u);
  EXPECT_EQ(c.unplaced_no_node_identity, 2u);
  EXPECT_EQ(c.unplaced_unknown_container, 1u);
  EXPECT_EQ(c.unplaced_unknown_pod, 1u);
  EXPECT_EQ(c.unplaced_ambiguous_node, 1u);
}

TEST(ProcessTable, UpsertReplacesAndRemoveForgets) {
  ProcessTable t = Table();
  const size_t before = t.size();
  // The same host pid re-published with another container (pid reuse): old index entry goes.
  t.Upsert({.cluster = "prod", .node = "node-b", .host_pid = 555, .ns_pid = 1, .container_id = "new"});
  EXPECT_EQ(t.size(), before);
  EXPECT_TRUE(t.FindByContainer("prod", "cafe", 1).empty());
  ASSERT_EQ(t.FindByContainer("prod", "new", 1).size(), 1u);
  EXPECT_TRUE(t.Remove("PROD", "Node-B", 555));
  EXPECT_FALSE(t.Remove("prod", "node-b", 555));
  EXPECT_TRUE(t.FindByContainer("prod", "new", 1).empty());
  EXPECT_EQ(t.FindByHostPid("prod", "node-b", 555), nullptr);
  EXPECT_EQ(t.size(), before - 1);
}

}  // namespace
}  // namespace flamestream::correlate
