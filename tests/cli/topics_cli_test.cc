// `flamestream topics check|create` against the dev broker (librdkafka's mock cluster) and,
// for the paths the mock cluster cannot serve (CreateTopics, DescribeConfigs: it has no
// controller), against testing::FakeKafkaController, a Kafka-protocol server that decodes and
// validates those requests and records each one as a JSON line.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/testing/fake_kafka_controller.h"

namespace flamestream::cli_test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using FakeController = testing::FakeKafkaController;

// Every request the fake recorded so far, in order.
std::vector<json> Requests(const FakeController& fake) {
  std::vector<json> out;
  for (const std::string& line : fake.Requests()) out.push_back(json::parse(line));
  return out;
}

const std::string kProcesses(kafka::topics::kProcesses);

std::vector<std::string> CreateArgs(const std::string& bootstrap, const std::string& replication) {
  return {"topics",       "create", "--brokers",     bootstrap,   "--timeout",   "10s",
          "--partitions", "8",      "--replication", replication, "--retention", "7d"};
}

std::string CreatedReport() {
  std::string want;
  for (const std::string& t : kafka::topics::All()) {
    want += "created  " + t + " (partitions 8, replication 3)\n";
  }
  return want;
}

// The CreateTopics request `create --partitions 8 --replication 3 --retention 7d` must send.
json WantedCreateTopics() {
  json topics = json::array();
  for (const std::string& t : kafka::topics::All()) {
    json configs = t == kProcesses
                       ? json::array({{"cleanup.policy", "compact"}})
                       : json::array({{"cleanup.policy", "delete"}, {"retention.ms", "604800000"}});
    topics.push_back({{"name", t},
                      {"num_partitions", 8},
                      {"replication_factor", 3},
                      {"assignments", json::array()},
                      {"configs", configs}});
  }
  // CreateTopics v2 is the highest the fake advertises; timeout_ms is the --timeout.
  return {{"api", "CreateTopics"},
          {"version", 2},
          {"topics", topics},
          {"timeout_ms", 10000},
          {"validate_only", false}};
}

std::vector<std::string> Lines(const std::string& text, std::string_view prefix) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (line.starts_with(prefix)) out.push_back(line);
    pos = end + 1;
  }
  return out;
}

TEST(FlamestreamTopics, CreateSendsEveryTopicWithPartitionsReplicationAndConfigs) {
  Result<std::unique_ptr<FakeController>> fake = FakeController::Start();
  ASSERT_TRUE(fake.ok()) << fake.error();
  CliRun r = RunCli(CreateArgs((*fake)->bootstrap(), "3"));
  EXPECT_EQ(r.exit, 0) << r.output;
  EXPECT_EQ(r.output, CreatedReport());
  const std::vector<json> requests = Requests(**fake);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], WantedCreateTopics()) << requests[0].dump(1);
}

TEST(FlamestreamTopics, CreateAgainReportsEveryTopicAsExisting) {
  Result<std::unique_ptr<FakeController>> fake = FakeController::Start();
  ASSERT_TRUE(fake.ok()) << fake.error();
  CliRun first = RunCli(CreateArgs((*fake)->bootstrap(), "3"));
  ASSERT_EQ(first.exit, 0) << first.output;
  CliRun again = RunCli(CreateArgs((*fake)->bootstrap(), "3"), /*merge_stderr=*/true);
  EXPECT_EQ(again.exit, 0) << again.output;
  std::string want;
  for (const std::string& t : kafka::topics::All()) want += "exists   " + t + "\n";
  EXPECT_EQ(again.output, want);
  // The second run asked for the same topics again; the cluster said they exist.
  const std::vector<json> requests = Requests(**fake);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1], WantedCreateTopics()) << requests[1].dump(1);
}

TEST(FlamestreamTopics, CheckReportsPartitionsReplicationAndConfigsOfCreatedTopics) {
  Result<std::unique_ptr<FakeController>> fake = FakeController::Start();
  ASSERT_TRUE(fake.ok()) << fake.error();
  CliRun created = RunCli(CreateArgs((*fake)->bootstrap(), "3"));
  ASSERT_EQ(created.exit, 0) << created.output;
  CliRun r = RunCli({"topics", "check", "--brokers", (*fake)->bootstrap(), "--timeout", "10s",
                     "--retention", "7d"},
                    /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 0) << r.output;
  std::string want;
  json resources = json::array();
  for (const std::string& t : kafka::topics::All()) {
    want += "ok       " + t + " (partitions 8, replication 3, cleanup.policy " +
            (t == kProcesses ? "compact" : "delete, retention.ms 604800000") + ")\n";
    resources.push_back(
        {{"resource_type", 2}, {"resource_name", t}, {"configuration_keys", nullptr}});
  }
  // Exactly the report: in particular no "(topic configs not checked: ...)" line.
  EXPECT_EQ(r.output, want);
  const std::vector<json> requests = Requests(**fake);
  ASSERT_EQ(requests.size(), 2u);
  // librdkafka asks for every config of each topic (no key filter), with synonyms.
  EXPECT_EQ(requests[1], json({{"api", "DescribeConfigs"},
                               {"version", 1},
                               {"resources", resources},
                               {"include_synonyms", true}}))
      << requests[1].dump(1);
}

// Every topic with 8 partitions and the planned configs, except the `broken` ones.
std::vector<std::string> PrecreateArgs(const std::map<std::string, std::string>& broken) {
  std::vector<std::string> args;
  for (const std::string& t : kafka::topics::All()) {
    auto it = broken.find(t);
    std::string spec = it != broken.end()
                           ? it->second
                           : t + ":8:3:" +
                                 (t == kProcesses ? "cleanup.policy=compact"
                                                  : "cleanup.policy=delete,retention.ms=604800000");
    args.insert(args.end(), {"--topic", spec});
  }
  return args;
}

TEST(FlamestreamTopics, CheckFailsOnUncompactedProcessesAndUnequalPartitionsButNotRetention) {
  const std::string spans(kafka::topics::kSpansKeyed);
  const std::string raw(kafka::topics::kSamplesRaw);
  Result<std::unique_ptr<FakeController>> fake = FakeController::Start(PrecreateArgs({
      {kProcesses, kProcesses + ":8:3:cleanup.policy=delete"},
      {spans, spans + ":4:3:cleanup.policy=delete,retention.ms=604800000"},
      {raw, raw + ":8:3:cleanup.policy=delete,retention.ms=86400000"},
  }));
  ASSERT_TRUE(fake.ok()) << fake.error();
  CliRun r = RunCli({"topics", "check", "--brokers", (*fake)->bootstrap(), "--timeout", "10s",
                     "--retention", "7d"},
                    /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 1) << r.output;
  EXPECT_EQ(Lines(r.output, "problem: "),
            (std::vector<std::string>{
                "problem: flamestream.processes.v1 is not compacted (cleanup.policy=delete)",
                "problem: flamestream.samples.symbolized.v1 has 8 partitions but "
                "flamestream.spans.keyed.v1 has 4: the correlator needs equal counts"}))
      << r.output;
  const std::vector<std::string> want_lines = {
      "BAD      flamestream.processes.v1 (partitions 8, replication 3, cleanup.policy delete)",
      "ok       flamestream.spans.keyed.v1 (partitions 4, replication 3, cleanup.policy delete, "
      "retention.ms 604800000)",
      // A retention other than --retention is pointed out, not failed.
      "ok       flamestream.samples.raw.v1 (partitions 8, replication 3, cleanup.policy delete, "
      "retention.ms 86400000 (wanted 604800000))",
      "ok       flamestream.samples.symbolized.v1 (partitions 8, replication 3, cleanup.policy "
      "delete, retention.ms 604800000)",
  };
  const std::vector<std::string> lines = Lines(r.output, "");
  for (const std::string& want : want_lines) {
    SCOPED_TRACE(want);
    EXPECT_EQ(std::count(lines.begin(), lines.end(), want), 1) << r.output;
  }
  EXPECT_EQ(Lines(r.output, "(topic configs not checked").size(), 0u) << r.output;
}

TEST(FlamestreamTopics, CheckSaysWhichTopicsConfigsTheClusterWouldNotDescribe) {
  const std::string otlp(kafka::topics::kOtlpSpans);
  Result<std::unique_ptr<FakeController>> fake = FakeController::Start([&] {
    std::vector<std::string> args = PrecreateArgs({});
    args.insert(args.end(),
                {"--deny-describe-configs", otlp, "--deny-describe-configs", kProcesses});
    return args;
  }());
  ASSERT_TRUE(fake.ok()) << fake.error();
  CliRun r = RunCli({"topics", "check", "--brokers", (*fake)->bootstrap(), "--timeout", "10s"},
                    /*merge_stderr=*/true);
  // Unreadable configs are said per topic, not taken for wrong ones (no "not compacted").
  EXPECT_EQ(r.exit, 0) << r.output;
  for (const std::string& t : {otlp, kProcesses}) {
    SCOPED_TRACE(t);
    const std::vector<std::string> lines = Lines(r.output, "");
    EXPECT_EQ(std::count(lines.begin(), lines.end(),
                         "ok       " + t +
                             " (partitions 8, replication 3, configs not readable: Broker: Topic "
                             "authorization failed)"),
              1)
        << r.output;
  }
  EXPECT_EQ(Lines(r.output, "problem: ").size(), 0u) << r.output;
}

TEST(FlamestreamTopics, CreateFailureNamesEachTopicAndTheBrokersError) {
  // A one-broker cluster that already has the processes topic: replication 3 cannot be met.
  Result<std::unique_ptr<FakeController>> fake = FakeController::Start(
      {"--brokers", "1", "--topic", kProcesses + ":8:1:cleanup.policy=compact"});
  ASSERT_TRUE(fake.ok()) << fake.error();
  CliRun r = RunCli(CreateArgs((*fake)->bootstrap(), "3"), /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 1) << r.output;
  const size_t n = kafka::topics::All().size();
  std::string want = "flamestream topics create: could not create " + std::to_string(n - 1) +
                     " of " + std::to_string(n) + " topic(s):\n";
  for (const std::string& t : kafka::topics::All()) {
    want += t == kProcesses
                ? "exists   " + t + "\n"
                : "FAILED   " + t + ": Replication factor: 3 larger than available brokers: 1.\n";
  }
  EXPECT_EQ(r.output, want);
}

TEST(FlamestreamTopics, CheckPassesOnTheDevBrokersTopics) {
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.error();
  CliRun r = RunCli({"topics", "check", "--brokers", (*broker)->bootstrap(), "--timeout", "2s"},
                    /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 0) << r.output;
  for (const std::string& t : kafka::topics::All()) {
    EXPECT_NE(r.output.find("ok       " + t + " (partitions 8, replication"), std::string::npos)
        << t << "\n"
        << r.output;
  }
  // The mock cluster has no controller, so configs cannot be described; that is said, not failed.
  EXPECT_NE(r.output.find("(topic configs not checked: "), std::string::npos) << r.output;
}

TEST(FlamestreamTopics, CheckFailsWhenSpansAndSamplesAreNotCoPartitioned) {
  // Every topic, but keyed spans with 4 partitions and no DLQ for raw samples.
  std::vector<std::string> topics;
  for (const std::string& t : kafka::topics::All()) {
    if (t == kafka::topics::Dlq(kafka::topics::kSamplesRaw)) continue;
    topics.push_back(t == kafka::topics::kSpansKeyed ? t + ":4" : t);
  }
  std::string list;
  for (const std::string& t : topics) list += (list.empty() ? "" : ",") + t;
  Result<std::unique_ptr<testing::DevBroker>> broker =
      testing::DevBroker::Start({.extra_args = {"--no-default-topics", "--topics", list}});
  ASSERT_TRUE(broker.ok()) << broker.error();
  CliRun r = RunCli({"topics", "check", "--brokers", (*broker)->bootstrap(), "--timeout", "2s"},
                    /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 1) << r.output;
  EXPECT_NE(r.output.find("MISSING  flamestream.samples.raw.v1.dlq"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("problem: flamestream.samples.symbolized.v1 has 8 partitions but "
                          "flamestream.spans.keyed.v1 has 4: the correlator needs equal counts"),
            std::string::npos)
      << r.output;
}

TEST(FlamestreamTopics, CreateExplainsWhyTheDevBrokerCannotCreateTopics) {
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.error();
  CliRun r = RunCli({"topics", "create", "--brokers", (*broker)->bootstrap(), "--timeout", "2s",
                     "--partitions", "8", "--replication", "3", "--retention", "7d"},
                    /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 1) << r.output;
  EXPECT_NE(r.output.find("the cluster's controller does not answer Admin requests (the dev "
                          "broker, librdkafka's mock cluster, cannot create topics this way"),
            std::string::npos)
      << r.output;
}

TEST(FlamestreamTopics, BadFlagsExit2) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"topics", "create", "--brokers", "x:1", "--partitions", "0"}, "--partitions"},
      {{"topics", "check", "--brokers", "x:1", "--retention", "forever"}, "--retention forever"},
      {{"topics", "check", "--brokers", "x:1", "-X", "novalue"}, "-X novalue"},
      {{"topics", "check", "--brokers", "x:1", "-X", "no.such.property=1"},
       "-X no.such.property=1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.needle);
    CliRun r = RunCli(c.args, /*merge_stderr=*/true);
    EXPECT_EQ(r.exit, 2) << r.output;
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace flamestream::cli_test
