#include "flamestream/config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace flamestream::config {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

struct TestConfig {
  std::string brokers = "localhost:9092";
  uint32_t frequency = 19;
  bool print = false;
  nanoseconds lateness = seconds(30);
  Bytes spool{64ULL << 20};
  std::vector<std::string> pids;
  std::string sink = "file";
  std::map<std::string, std::string> kafka;
};

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_.Add("kafka.bootstrap.servers", &cfg_.brokers, "brokers", "--brokers");
    schema_.Add("agent.frequency", &cfg_.frequency, "Hz", "--frequency");
    schema_.Add("print", &cfg_.print, "print mode", "--print");
    schema_.Add("correlator.lateness", &cfg_.lateness, "allowed lateness");
    schema_.Add("agent.spool.limit", &cfg_.spool, "spool bytes");
    schema_.Add("filter.pids", &cfg_.pids, "pids", "--pid");
    schema_.AddChoice("sink", &cfg_.sink, {"file", "pyroscope", "otlp"}, "sink", "--sink");
    schema_.AddPassthrough("kafka", &cfg_.kafka, "librdkafka properties");
    schema_.Require("agent.frequency", [this] { return cfg_.frequency >= 1; }, "1 Hz or more");
  }

  Result<Outcome> LoadWith(std::vector<std::string> args, Environment env = {}) {
    return Load(schema_, {"flamestream-test", "test"}, args, env);
  }

  std::string WriteFile(const std::string& text) {
    char path[] = "/tmp/fs-config-XXXXXX";
    const int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    close(fd);
    std::ofstream(path) << text;
    files_.emplace_back(path);
    return path;
  }

  void TearDown() override {
    for (const std::string& f : files_) {
      std::remove(f.c_str());
    }
  }

  TestConfig cfg_;
  Schema schema_;
  std::vector<std::string> files_;
};

TEST_F(ConfigTest, DefaultsStayWhenNothingIsSet) {
  ASSERT_TRUE(LoadWith({}).ok());
  EXPECT_EQ(cfg_.brokers, "localhost:9092");
  EXPECT_EQ(cfg_.frequency, 19u);
  EXPECT_EQ(cfg_.lateness, seconds(30));
}

TEST_F(ConfigTest, PrecedenceIsFlagsThenEnvThenFileThenDefaults) {
  const std::string file = WriteFile(
      "kafka:\n  bootstrap.servers: file:9092\nagent:\n  frequency: 49\n"
      "correlator:\n  lateness: 10s\nagent.spool.limit: 1GiB\n");
  // File only.
  ASSERT_TRUE(LoadWith({"--config", file}).ok());
  EXPECT_EQ(cfg_.brokers, "file:9092");
  EXPECT_EQ(cfg_.frequency, 49u);
  EXPECT_EQ(cfg_.lateness, seconds(10));
  EXPECT_EQ(cfg_.spool.value, 1ULL << 30);
  // Env beats file.
  const Environment env = {{"FLAMESTREAM_KAFKA__BOOTSTRAP__SERVERS", "env:9092"},
                           {"FLAMESTREAM_AGENT__FREQUENCY", "99"},
                           {"PATH", "/usr/bin"}};
  ASSERT_TRUE(LoadWith({"--config", file}, env).ok());
  EXPECT_EQ(cfg_.brokers, "env:9092");
  EXPECT_EQ(cfg_.frequency, 99u);
  // Flags beat env; --set and named flags both count, the later one wins.
  ASSERT_TRUE(LoadWith({"--config=" + file, "--set", "agent.frequency=199", "--brokers",
                        "flag:9092", "--frequency=999"},
                       env)
                  .ok());
  EXPECT_EQ(cfg_.brokers, "flag:9092");
  EXPECT_EQ(cfg_.frequency, 999u);
  EXPECT_EQ(cfg_.lateness, seconds(10));  // still from the file
}

TEST_F(ConfigTest, ErrorsNameTheKeyTheSourceAndTheExpectation) {
  struct Case {
    std::vector<std::string> args;
    Environment env;
    std::string yaml;
    std::string expected;
  };
  const std::vector<Case> kCases = {
      {{"--frequency", "fast"}, {}, "",
       "config key \"agent.frequency\" (from flag --frequency): expected a non-negative "
       "integer"},
      {{"--set", "agent.nope=1"}, {}, "", "unknown config key \"agent.nope\" (from --set)"},
      {{"--bogus"}, {}, "", "unknown flag \"--bogus\""},
      {{}, {{"FLAMESTREAM_CORRELATOR__LATENESS", "soon"}}, "",
       "config key \"correlator.lateness\" (from environment "
       "FLAMESTREAM_CORRELATOR__LATENESS): invalid duration \"soon\""},
      {{}, {{"FLAMESTREAM_AGENT__FREQUENZ", "3"}}, "", "unknown config key \"agent.frequenz\""},
      {{}, {}, "agent:\n  spool:\n    limit: huge\n",
       "config key \"agent.spool.limit\" (from file"},
      {{}, {}, "sink: s3\n", "expected one of file, pyroscope, otlp, got \"s3\""},
      {{}, {}, "agent: [1, 2\n", "invalid YAML"},
      {{"--frequency", "0"}, {}, "", "config key \"agent.frequency\": expected 1 Hz or more"},
      {{"--brokers"}, {}, "", "flag --brokers (config key \"kafka.bootstrap.servers\") needs a value"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.expected);
    std::vector<std::string> args = c.args;
    if (!c.yaml.empty()) {
      args.push_back("--config");
      args.push_back(WriteFile(c.yaml));
    }
    auto r = LoadWith(args, c.env);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.error().message().find(c.expected), std::string::npos) << r.error().message();
  }
}

// Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, <SERVICE>_PORT_<n>_TCP_* for every
// Service in the namespace: Services named flamestream-redis and flamestream-correlator put
// FLAMESTREAM_REDIS_* and FLAMESTREAM_CORRELATOR_* into every pod. They are not config keys and
// must not stop a service; a misspelt dotted key (with "__") still does.
TEST_F(ConfigTest, KubernetesServiceLinksAndReservedNamesAreNotConfigKeys) {
  const Environment env = {
      {"FLAMESTREAM_CORRELATOR_PORT", "tcp://10.0.0.1:4317"},
      {"FLAMESTREAM_CORRELATOR_PORT_4317_TCP_ADDR", "10.0.0.1"},
      {"FLAMESTREAM_CORRELATOR_SERVICE_HOST", "10.0.0.1"},
      {"FLAMESTREAM_REDIS_SERVICE_PORT", "6379"},
      {"FLAMESTREAM_REDIS_PORT_6379_TCP", "tcp://10.0.0.2:6379"},
      {"FLAMESTREAM_DWARF_WORKER", "/opt/flamestream/bin/flamestream-dwarf-worker"},
      {"FLAMESTREAM_SHARE_DIR", "/opt/flamestream/share"},
      {"FLAMESTREAM_PRINT", "true"},  // a top-level key still reads from the environment
      {"FLAMESTREAM_AGENT__FREQUENCY", "49"},
  };
  auto r = LoadWith({}, env);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(cfg_.print);
  EXPECT_EQ(cfg_.frequency, 49u);
  EXPECT_EQ(r->ignored_environment,
            (std::vector<std::string>{"FLAMESTREAM_CORRELATOR_PORT",
                                      "FLAMESTREAM_CORRELATOR_PORT_4317_TCP_ADDR",
                                      "FLAMESTREAM_CORRELATOR_SERVICE_HOST",
                                      "FLAMESTREAM_REDIS_PORT_6379_TCP",
                                      "FLAMESTREAM_REDIS_SERVICE_PORT"}));

  auto typo = LoadWith({}, {{"FLAMESTREAM_CORRELATOR_PORT", "tcp://10.0.0.1:4317"},
                            {"FLAMESTREAM_CORRELATOR__LATENES", "10s"}});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message().find("unknown config key \"correlator.latenes\""),
            std::string::npos)
      << typo.error().message();
}

TEST_F(ConfigTest, PassthroughKeepsEveryLibrdkafkaProperty) {
  const std::string file = WriteFile("kafka:\n  security.protocol: SASL_SSL\n  sasl:\n    mechanism: PLAIN\n");
  ASSERT_TRUE(LoadWith({"--config", file, "--set", "kafka.linger.ms=5"},
                       {{"FLAMESTREAM_KAFKA__SASL__USERNAME", "u"}})
                  .ok());
  EXPECT_EQ(cfg_.brokers, "localhost:9092");  // declared key, not passthrough
  EXPECT_EQ(cfg_.kafka.at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(cfg_.kafka.at("sasl.mechanism"), "PLAIN");
  EXPECT_EQ(cfg_.kafka.at("sasl.username"), "u");
  EXPECT_EQ(cfg_.kafka.at("linger.ms"), "5");
}

TEST_F(ConfigTest, ListsBoolsAndPositionals) {
  const std::string file = WriteFile("filter:\n  pids: [1, 2]\n");
  auto r = LoadWith({"--config", file, "resolve", "--print", "--pid", "7", "--pid=8", "--",
                     "--not-a-flag"});
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(cfg_.print);
  EXPECT_EQ(cfg_.pids, (std::vector<std::string>{"1", "2", "7", "8"}));
  EXPECT_EQ(r->positional, (std::vector<std::string>{"resolve", "--not-a-flag"}));
  ASSERT_TRUE(LoadWith({"--print=false", "--set", "filter.pids=3,4"}).ok());
  EXPECT_FALSE(cfg_.print);
  EXPECT_EQ(cfg_.pids, (std::vector<std::string>{"3", "4"}));
}

TEST_F(ConfigTest, HelpListsEveryKeyWithDefaultAndFlag) {
  auto r = LoadWith({"--frequency", "5", "--help"});
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->help_requested);
  for (const char* needle : {"--frequency VALUE", "agent.frequency  (uint, default 19)",
                             "correlator.lateness  (duration, default 30s)",
                             "agent.spool.limit  (size, default 64MiB)", "kafka.*", "--print "}) {
    SCOPED_TRACE(needle);
    EXPECT_NE(r->help.find(needle), std::string::npos) << r->help;
  }
}

TEST(EnvName, WritesDotsAsDoubleUnderscores) {
  EXPECT_EQ(EnvName("kafka.bootstrap.servers"), "FLAMESTREAM_KAFKA__BOOTSTRAP__SERVERS");
  EXPECT_EQ(EnvName("admin.listen"), "FLAMESTREAM_ADMIN__LISTEN");
}

}  // namespace
}  // namespace flamestream::config
