// The names by which records of different topics find each other: one format, one parser.
//
//   std::string key = NodeKey::Of("Prod", "Node-A").str();          // "prod/node-a"
//   FS_ASSIGN_OR_RETURN(NodeKey k, NodeKey::Parse(msg.key()));      // k.cluster == "prod"
//   ProcessKey{k, 4242, 98765}.str();                               // "prod/node-a/4242/98765"
//
//   "<cluster>/<node>"                      NodeKey: the record key of raw, symbolized and
//                                           correlated samples and of keyed spans, so node n's
//                                           samples and spans share a partition; the join key
//   "<cluster>/<node>/<host pid>/<ticks>"   ProcessKey: the processes table's record key
//                                           (ticks: the process start time, /proc/<pid>/stat
//                                           field 22, so a reused pid is another process)
//
// Cluster and node names are lower case in keys (Kubernetes node names are; host names
// compare case-insensitively), whatever case the agent's config or a span's resource used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "flamestream/common/status.h"

namespace flamestream::common {

struct NodeKey {
  std::string cluster;  // lower case
  std::string node;     // lower case

  // Lower-cases both.
  static NodeKey Of(std::string_view cluster, std::string_view node);
  // "<cluster>/<node>": the first '/' separates them (neither may be empty).
  static Result<NodeKey> Parse(std::string_view key);
  [[nodiscard]] std::string str() const;
  friend bool operator==(const NodeKey&, const NodeKey&) = default;
};

struct ProcessKey {
  NodeKey node;
  uint32_t pid = 0;  // host pid
  uint64_t start_ticks = 0;

  static Result<ProcessKey> Parse(std::string_view key);
  [[nodiscard]] std::string str() const;
  // "<cluster>/<node>/<pid>": the process without its start time (a pid's current holder).
  [[nodiscard]] std::string PidKey() const;
  friend bool operator==(const ProcessKey&, const ProcessKey&) = default;
};

}  // namespace flamestream::common
