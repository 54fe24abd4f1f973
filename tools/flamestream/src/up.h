// `flamestream up`: the whole pipeline on this machine under one supervisor.
//
//   UpOptions opts;                      // flags fill it (main.cc)
//   opts.duration = std::chrono::seconds(30);
//   return RunUp(opts, std::cerr);       // exit code
//
// Start order: dev broker (unless --brokers), redis-server (unless --redis), symbolizer,
// correlator, exporter, agent (consumers before the producer, so nothing waits on a stage
// that is not there yet). Drain order: agent, symbolizer (after its lag reaches 0),
// correlator, exporter, then redis and the broker.
#pragma once

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream_service_keys.h"
#include "supervisor.h"

namespace flamestream::cli {

// What `up` and `replay` pass to each stage: the services' own key names
// (flamestream_service_keys.h), and what the CLI itself looks for in their output.
struct StageKeys {
  const char* kafka_bootstrap = keys::kKafkaBootstrap;
  const char* agent_frequency = keys::agent::kFrequency;
  const char* agent_pids = keys::agent::kPids;
  const char* agent_comm = keys::agent::kComm;
  const char* symbolizer_redis = keys::symbolizer::kRedisAddress;
  const char* symbolizer_debug_dirs = keys::symbolizer::kDebugDirs;
  const char* default_debug_dir = keys::symbolizer::kDefaultDebugDir;
  // Replay mode of each stage (ARCHITECTURE.md, "Replay").
  const char* symbolizer_replay = keys::symbolizer::kReplay;
  const char* symbolizer_replay_from = keys::symbolizer::kReplayFrom;
  const char* symbolizer_replay_to = keys::symbolizer::kReplayTo;
  const char* symbolizer_replay_build_ids = keys::symbolizer::kReplayBuildIds;
  const char* symbolizer_replay_epoch = keys::symbolizer::kReplayEpoch;
  const char* correlator_replay = keys::correlator::kReplay;
  const char* exporter_replay = keys::exporter::kReplay;
  const char* correlator_lateness = keys::correlator::kLateness;
  const char* correlator_otlp_grpc_listen = keys::correlator::kOtlpGrpcListen;
  const char* correlator_otlp_http_listen = keys::correlator::kOtlpHttpListen;
  const char* exporter_sinks = keys::exporter::kSinks;
  const char* exporter_file_out = keys::exporter::kFileOut;
  const char* exporter_pyroscope_url = keys::exporter::kPyroscopeUrl;
  const char* exporter_otlp_endpoint = keys::exporter::kOtlpEndpoint;
  const char* exporter_window = keys::exporter::kWindow;
  const char* admin_listen_flag = keys::kAdminListenFlag;
  // The file sink writes one page per service into its output directory: <service>.html.
  const char* flame_graph_extension = ".html";
  // Counters shown as <n>/s in the status line.
  const char* agent_rate_metric = "fs_agent_samples_total";
  const char* stage_rate_metric = "fs_records_in_total";
};
inline constexpr StageKeys kStageKeys{};

// "key=value", the argument of a stage's `--set`.
inline std::string SetArg(const char* key, const std::string& value) {
  return std::string(key) + "=" + value;
}

struct UpOptions {
  std::chrono::nanoseconds duration = std::chrono::seconds(60);  // 0: until Ctrl-C
  std::string out = "./flamestream-out";
  uint32_t frequency = 99;
  std::vector<int> pids;
  std::string comm;
  std::string brokers;    // empty: start the dev broker
  std::string redis;      // empty: start a private redis-server
  std::string pyroscope;  // URL; adds the pyroscope sink
  std::string otlp;       // endpoint; adds the otlp sink
  std::string otlp_host = "127.0.0.1";
  int otlp_grpc_port = 4317;
  int otlp_http_port = 4318;
  int broker_port = 9092;
  // Partitions of each dev-broker topic. The dev broker (librdkafka's mock cluster) keeps only
  // the newest 5 MiB (or 100,000 record sets) of each partition in memory, so more partitions
  // hold more backlog before a slow stage loses records (which up reports and fails on).
  int broker_partitions = 16;
  int redis_port = 0;          // 0: any free loopback port
  int admin_port_base = 9401;  // agent +0, correlator +1, exporter +2, symbolizer +3
  std::chrono::nanoseconds lateness = std::chrono::seconds(2);
  std::chrono::nanoseconds window = std::chrono::seconds(10);
  std::chrono::nanoseconds ready_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds drain_timeout = std::chrono::seconds(120);
  // Extra settings, "stage:key=value" ("agent:agent.kernel_stacks=false").
  std::vector<std::string> stage_sets;
  std::string bin_dir;  // searched before everything else (tests, custom installs)
  // Extra debug directories for the symbolizer (build-id layout, .gnu_debuglink), searched
  // before /usr/lib/debug.
  std::vector<std::string> debug_dirs;
  bool skip_root_check = false;
  std::optional<bool> status_line;  // unset: when stderr is a terminal
};

// Where a stage binary lives: `bin_dir` (if set), the directory of /proc/self/exe, then
// $FLAMESTREAM_BIN_DIR, then PATH. NotFound lists every place searched.
Result<std::string> FindStageBinary(const std::string& name, const std::string& bin_dir);

// The symbolizer's debug directories for --debug-dir DIR...: each must be a directory
// (InvalidArgument naming --debug-dir otherwise); made absolute and followed by
// /usr/lib/debug. Empty input: empty (the symbolizer keeps its own default).
Result<std::vector<std::string>> SymbolizerDebugDirs(const std::vector<std::string>& dirs);

// The pipeline's stages for `opts` (binaries resolved, ports chosen, logs under out/logs).
Result<std::vector<StageSpec>> BuildStages(const UpOptions& opts);

// Pre-flight (root, binaries, ports), start, supervise, drain; returns the exit code:
// 0 after a clean drain, 1 when the drain failed, 2 for a bad flag, busy port or missing
// binary, 130 when a second Ctrl-C aborted the drain.
int RunUp(const UpOptions& opts, const std::vector<std::string>& argv, std::ostream& err);

}  // namespace flamestream::cli
