// The config keys of each service that other programs set (`flamestream up` and `flamestream
// replay` pass them as `--set key=value`). The services declare these keys with these
// constants, so a renamed key cannot leave the CLI behind; tests/cli/service_keys_test.cc
// checks that every one is in its service's --help.
//
//   args.push_back(std::string("--set=") + keys::symbolizer::kRedisAddress + "=" + redis);
#pragma once

namespace flamestream::keys {

// Every Kafka service: librdkafka properties under `kafka.` (passed through).
inline constexpr const char* kKafkaBootstrap = "kafka.bootstrap.servers";
// Every service: the admin listener's flag (/metrics, /healthz, /readyz).
inline constexpr const char* kAdminListenFlag = "--admin-listen";

namespace agent {
inline constexpr const char* kFrequency = "agent.frequency";
inline constexpr const char* kPids = "agent.pids";  // list, "1,2,3"
inline constexpr const char* kComm = "agent.comm";  // regex
}  // namespace agent

namespace symbolizer {
inline constexpr const char* kRedisAddress = "symbolizer.redis.address";  // host:port or URL
inline constexpr const char* kDebugDirs = "symbolizer.debug_dirs";        // list, in order
inline constexpr const char* kDefaultDebugDir = "/usr/lib/debug";         // its default
inline constexpr const char* kReplay = "symbolizer.replay";
inline constexpr const char* kReplayFrom = "symbolizer.replay.from";  // Unix ns, RFC 3339, -1h
inline constexpr const char* kReplayTo = "symbolizer.replay.to";
inline constexpr const char* kReplayBuildIds = "symbolizer.replay.build_ids";  // list
inline constexpr const char* kReplayEpoch = "symbolizer.replay.epoch";
}  // namespace symbolizer

namespace correlator {
inline constexpr const char* kLateness = "correlator.lateness";
inline constexpr const char* kReplay = "correlator.replay";
// The OTLP receivers' keys (spans::ReceiverConfig::Declare under this prefix).
inline constexpr const char* kOtlpPrefix = "correlator.otlp";
inline constexpr const char* kOtlpGrpcListen = "correlator.otlp.grpc.listen";  // host:port
inline constexpr const char* kOtlpHttpListen = "correlator.otlp.http.listen";  // host:port
}  // namespace correlator

namespace exporter {
inline constexpr const char* kSinks = "exporter.sinks";       // list: file, pyroscope, otlp
inline constexpr const char* kFileOut = "exporter.file.out";  // directory
inline constexpr const char* kPyroscopeUrl = "exporter.pyroscope.url";
inline constexpr const char* kOtlpEndpoint = "exporter.otlp.endpoint";
inline constexpr const char* kWindow = "exporter.window";
inline constexpr const char* kReplay = "exporter.replay";
}  // namespace exporter

}  // namespace flamestream::keys
