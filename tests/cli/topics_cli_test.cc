// `flamestream topics check|create` against the dev broker (librdkafka's mock cluster).
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "flamestream/kafka/topics.h"

namespace flamestream::cli_test {
namespace {

TEST(FlamestreamTopics, CheckPassesOnTheDevBrokersTopics) {
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.error();
  CliRun r = RunCli({"topics", "check", "--brokers", (*broker)->bootstrap(), "--timeout", "2s"},
                    /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 0) << r.output;
  for (const std::string& t : kafka::topics::All()) {
    EXPECT_NE(r.output.find("ok       " + t + " (partitions 8, replication"), std::string::npos)
        << t << "\n" << r.output;
  }
  // The mock cluster has no controller, so configs cannot be described; that is said, not failed.
  EXPECT_NE(r.output.find("(topic configs not checked: "),
            std::string::npos)
      << r.output;
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
  Result<std::unique_ptr<testing::DevBroker>> broker = testing::DevBroker::Start(
      {.extra_args = {"--no-default-topics", "--topics", list}});
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
