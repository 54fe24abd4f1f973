// The contract every service binary keeps (issue "Foundation"): --help, a config error that
// names the key and exits 2, /metrics /healthz /readyz on the admin listener, and a SIGTERM
// drain that exits 0.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "flamestream/testing/subprocess.h"
#include "flamestream_service_keys.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
using testing::Subprocess;

std::string Bin(const std::string& name) {
  const char* dir = std::getenv("FS_BIN_DIR");
  return std::string(dir != nullptr ? dir : "build/bin") + "/" + name;
}

// Runs to completion, returning (exit code, combined output).
std::pair<int, std::string> RunToExit(std::vector<std::string> argv,
                                      std::vector<std::pair<std::string, std::string>> env = {}) {
  auto proc =
      Subprocess::Start({.argv = std::move(argv), .env = std::move(env), .capture_stderr = true});
  EXPECT_TRUE(proc.ok()) << proc.error();
  if (!proc.ok()) return {-1, ""};
  std::string out;
  while (true) {
    auto line = (*proc)->ReadLine(10s);
    if (!line.ok()) break;
    out += *line + "\n";
  }
  auto st = (*proc)->Wait(10s);
  EXPECT_TRUE(st.ok());
  return {st.ok() && st->exited ? st->code : -1, out};
}

class ServiceBinary : public ::testing::TestWithParam<std::string> {};

TEST_P(ServiceBinary, HelpListsUsageAndCommonKeys) {
  auto [code, out] = RunToExit({Bin(GetParam()), "--help"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("Usage: " + GetParam()), std::string::npos) << out;
  for (const char* key : {"admin.listen", "log.level", "shutdown.deadline", "--config FILE"}) {
    EXPECT_NE(out.find(key), std::string::npos) << key;
  }
}

// The keys `flamestream up` and `replay` set (flamestream_service_keys.h) are keys the
// service declares: its --help lists each as a config key ("  <key>  (type, default ...").
TEST(ServiceKeys, EveryKeyTheCliSetsIsDeclaredByItsService) {
  const std::vector<std::pair<std::string, std::vector<const char*>>> kExported = {
      {"flamestream-agent", {keys::agent::kFrequency, keys::agent::kPids, keys::agent::kComm}},
      {"flamestream-symbolizer",
       {keys::symbolizer::kRedisAddress, keys::symbolizer::kDebugDirs, keys::symbolizer::kReplay,
        keys::symbolizer::kReplayFrom, keys::symbolizer::kReplayTo,
        keys::symbolizer::kReplayBuildIds, keys::symbolizer::kReplayEpoch}},
      {"flamestream-correlator",
       {keys::correlator::kLateness, keys::correlator::kReplay, keys::correlator::kOtlpGrpcListen,
        keys::correlator::kOtlpHttpListen}},
      {"flamestream-exporter",
       {keys::exporter::kSinks, keys::exporter::kFileOut, keys::exporter::kPyroscopeUrl,
        keys::exporter::kOtlpEndpoint, keys::exporter::kWindow, keys::exporter::kReplay}},
  };
  for (const auto& [bin, exported] : kExported) {
    auto [code, out] = RunToExit({Bin(bin), "--help"});
    ASSERT_EQ(code, 0) << bin;
    EXPECT_NE(out.find(keys::kAdminListenFlag), std::string::npos) << bin;
    for (const char* key : exported) {
      EXPECT_NE(out.find("\n  " + std::string(key) + "  ("), std::string::npos)
          << bin << " does not declare " << key;
    }
  }
}

TEST_P(ServiceBinary, ConfigErrorsNameTheKeyAndExit2) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;
    std::string expected;
  };
  const std::vector<Case> kCases = {
      {{"--set", "no.such.key=1"}, {}, "unknown config key \"no.such.key\" (from --set)"},
      {{"--set", "shutdown.deadline=soon"}, {}, "config key \"shutdown.deadline\" (from --set)"},
      {{"--log-level", "loud"}, {}, "config key \"log.level\" (from flag --log-level)"},
      {{},
       {{"FLAMESTREAM_LOG__FORMAT", "xml"}},
       "config key \"log.format\" (from environment FLAMESTREAM_LOG__FORMAT)"},
      {{"--config", "/nonexistent/flamestream.yaml"}, {}, "--config: cannot read"},
      {{"--set", "admin.bearer_token_file=/nonexistent/token"},
       {},
       "config key \"admin.bearer_token_file\": cannot read /nonexistent/token"},
      {{"--set", "admin.tls.cert_file=/nonexistent/admin.pem", "--set",
        "admin.tls.key_file=/nonexistent/admin.key"},
       {},
       "config key \"admin.tls.cert_file\": cannot read /nonexistent/admin.pem"},
      {{"--set", "admin.tls.client_ca_file=/nonexistent/ca.pem"},
       {},
       "config key \"admin.tls.cert_file\": required when admin.tls.client_ca_file is set"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.expected);
    std::vector<std::string> argv = {Bin(GetParam())};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto [code, out] = RunToExit(argv, c.env);
    EXPECT_EQ(code, 2);
    EXPECT_NE(out.find(c.expected), std::string::npos) << out;
  }
}

TEST(ExporterBinary, PrivacyMistakesNameTheKeyAndExit2) {
  const std::pair<std::string, std::string> kCases[] = {
      {"exporter.labels.deny=pod_uid",
       "config key \"exporter.labels.deny\": 'pod_uid' names no label"},
      {"exporter.labels.deny=service_name",
       "config key \"exporter.labels.deny\": service_name is the series identity"},
      {"exporter.labels.allow=hostname", "config key \"exporter.labels.allow\": 'hostname'"},
      {"exporter.paths.rewrite=/home/", "config key \"exporter.paths.rewrite\": expected from=to"},
  };
  for (const auto& [set, expected] : kCases) {
    SCOPED_TRACE(set);
    auto [code, out] = RunToExit({Bin("flamestream-exporter"), "--set", set});
    EXPECT_EQ(code, 2);
    EXPECT_NE(out.find(expected), std::string::npos) << out;
  }
}

INSTANTIATE_TEST_SUITE_P(AllServices, ServiceBinary,
                         ::testing::Values("flamestream-correlator", "flamestream-exporter",
                                           "flamestream-symbolizer"));

// The OTLP receivers' TLS and token files are checked before the correlator dials Kafka: a
// mistake names the key and exits 2.
TEST(CorrelatorBinary, OtlpReceiverSecurityMistakesNameTheKeyAndExit2) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> kCases = {
      {{"--set", "correlator.otlp.tls.cert_file=/nonexistent/otlp.pem", "--set",
        "correlator.otlp.tls.key_file=/nonexistent/otlp.key"},
       "correlator.otlp.tls.cert_file"},
      {{"--set", "correlator.otlp.tls.cert_file=/nonexistent/otlp.pem"},
       "correlator.otlp.tls.key_file"},
      {{"--set", "correlator.otlp.bearer_token_file=/nonexistent/token"},
       "correlator.otlp.bearer_token_file"},
  };
  for (const auto& [args, key] : kCases) {
    SCOPED_TRACE(key);
    std::vector<std::string> argv = {Bin("flamestream-correlator"), "--admin-listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto [code, out] = RunToExit(argv);
    EXPECT_EQ(code, 2) << out;
    EXPECT_NE(out.find("config key \\\"" + key + "\\\""), std::string::npos) << out;
  }
}

// Services that can idle without external systems: serve admin endpoints, drain on SIGTERM.
class IdleService : public ::testing::TestWithParam<std::string> {};

TEST_P(IdleService, ServesAdminEndpointsAndDrainsOnSigterm) {
  auto proc = Subprocess::Start(
      {.argv = {Bin(GetParam()), "--admin-listen", "127.0.0.1:0"}, .capture_stderr = true});
  ASSERT_TRUE(proc.ok()) << proc.error();
  auto started = (*proc)->WaitForLine(
      [](std::string_view l) { return l.find("msg=\"started\"") != std::string_view::npos; }, 20s);
  ASSERT_TRUE(started.ok()) << started.error();
  const size_t at = started->find("admin_port=");
  ASSERT_NE(at, std::string::npos);
  const int port = std::stoi(started->substr(at + 11));
  httplib::Client cli("127.0.0.1", port);
  auto health = cli.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto metrics = cli.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  ASSERT_TRUE((*proc)->Signal(SIGTERM).ok());
  auto st = (*proc)->Wait(30s);
  ASSERT_TRUE(st.ok()) << st.error();
  EXPECT_TRUE(st->exited);
  EXPECT_EQ(st->code, 0);
}

INSTANTIATE_TEST_SUITE_P(Shells, IdleService,
                         ::testing::Values("flamestream-correlator", "flamestream-exporter",
                                           "flamestream-symbolizer"));

}  // namespace
}  // namespace flamestream
