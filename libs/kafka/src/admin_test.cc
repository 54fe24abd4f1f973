// kafka::Admin against the dev broker (metadata: topics, partitions, replication; the Admin
// requests its mock cluster cannot serve fail instead of hanging) and against
// testing::FakeKafkaController, a Kafka-protocol server that creates topics and describes their
// configs as a broker would.
#include "flamestream/kafka/admin.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "flamestream/kafka/topics.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/fake_kafka_controller.h"
#include "kafka_test_util.h"

namespace flamestream::kafka::broker_test {
namespace {

using flamestream::testing::FakeKafkaController;

std::unique_ptr<Admin> MakeAdmin(const std::string& bootstrap) {
  Result<std::unique_ptr<Admin>> admin = Admin::Create({{"bootstrap.servers", bootstrap}});
  EXPECT_TRUE(admin.ok()) << admin.error();
  return admin.ok() ? std::move(*admin) : nullptr;
}

std::unique_ptr<FakeKafkaController> StartFake(std::vector<std::string> args = {}) {
  Result<std::unique_ptr<FakeKafkaController>> fake = FakeKafkaController::Start(std::move(args));
  EXPECT_TRUE(fake.ok()) << fake.error();
  return fake.ok() ? std::move(*fake) : nullptr;
}

TEST(KafkaAdmin, ListsTheClustersTopicsWithPartitionsAndReplication) {
  auto broker = StartBroker({.brokers = 2, .topics = {"admin-four:4"}});
  ASSERT_TRUE(broker);
  auto admin = MakeAdmin(broker->bootstrap());
  ASSERT_TRUE(admin);
  Result<std::map<std::string, TopicDescription>> listed = admin->ListTopics(5s);
  ASSERT_TRUE(listed.ok()) << listed.error();
  for (const std::string& t : topics::All()) {
    SCOPED_TRACE(t);
    ASSERT_TRUE(listed->contains(t));
    EXPECT_EQ(listed->at(t).name, t);
    EXPECT_EQ(listed->at(t).partitions, 8);
    EXPECT_EQ(listed->at(t).replication, 2);  // min(3, brokers) on the dev broker
  }
  ASSERT_TRUE(listed->contains("admin-four"));
  EXPECT_EQ(listed->at("admin-four").partitions, 4);
  EXPECT_EQ(listed->size(), topics::All().size() + 1);

  // A topic made meanwhile is in the next answer: metadata is asked for, not cached.
  ASSERT_TRUE(broker->Command("topic create admin-late 3").ok());
  listed = admin->ListTopics(5s);
  ASSERT_TRUE(listed.ok()) << listed.error();
  ASSERT_TRUE(listed->contains("admin-late"));
  EXPECT_EQ(listed->at("admin-late").partitions, 3);
}

// The mock cluster implements neither CreateTopics nor DescribeConfigs: both come back as errors
// within their timeouts (plus the answer slack), never as success or a hang.
TEST(KafkaAdmin, AdminRequestsTheDevBrokerCannotServeFailWithinTheirTimeout) {
  auto broker = StartBroker();
  ASSERT_TRUE(broker);
  auto admin = MakeAdmin(broker->bootstrap());
  ASSERT_TRUE(admin);
  const auto start = Clock::now();
  Result<std::vector<CreateTopicResult>> created =
      admin->CreateTopics({{.name = "never", .partitions = 1, .replication = 1}}, 2s);
  ASSERT_FALSE(created.ok());
  // librdkafka 2.0.2: "CreateTopics: Failed while waiting for controller: Local: Timed out".
  EXPECT_EQ(created.error().code(), StatusCode::kUnavailable) << created.error();
  EXPECT_NE(created.error().message().find("controller"), std::string::npos) << created.error();
  Result<std::map<std::string, TopicConfigs>> configs =
      admin->DescribeTopicConfigs({std::string(topics::kProcesses)}, 2s);
  ASSERT_FALSE(configs.ok());
  EXPECT_EQ(configs.error().code(), StatusCode::kUnavailable) << configs.error();
  EXPECT_NE(configs.error().message().find("DescribeConfigs"), std::string::npos)
      << configs.error();
  EXPECT_LT(Clock::now() - start, 2 * (2s + 5s) + 2s);
  Result<std::map<std::string, TopicDescription>> listed = admin->ListTopics(5s);
  ASSERT_TRUE(listed.ok()) << listed.error();
  EXPECT_FALSE(listed->contains("never"));
}

TEST(KafkaAdmin, CreatedTopicsHaveTheirPartitionsReplicationAndConfigs) {
  auto fake = StartFake({"--brokers", "3"});
  ASSERT_TRUE(fake);
  auto admin = MakeAdmin(fake->bootstrap());
  ASSERT_TRUE(admin);
  EXPECT_TRUE(admin->ControllerId(5s).has_value());
  Result<std::vector<CreateTopicResult>> created = admin->CreateTopics(
      {{.name = "compacted",
        .partitions = 6,
        .replication = 3,
        .configs = {{"cleanup.policy", "compact"}}},
       {.name = "short-lived",
        .partitions = 2,
        .replication = 1,
        .configs = {{"cleanup.policy", "delete"}, {"retention.ms", "3600000"}}}},
      10s);
  ASSERT_TRUE(created.ok()) << created.error();
  ASSERT_EQ(created->size(), 2u);
  for (const CreateTopicResult& r : *created) {
    SCOPED_TRACE(r.name);
    EXPECT_TRUE(r.status.ok()) << r.status;
  }

  Result<std::map<std::string, TopicDescription>> listed = admin->ListTopics(5s);
  ASSERT_TRUE(listed.ok()) << listed.error();
  ASSERT_TRUE(listed->contains("compacted"));
  ASSERT_TRUE(listed->contains("short-lived"));
  EXPECT_EQ(listed->at("compacted").partitions, 6);
  EXPECT_EQ(listed->at("compacted").replication, 3);
  EXPECT_EQ(listed->at("short-lived").partitions, 2);
  EXPECT_EQ(listed->at("short-lived").replication, 1);

  Result<std::map<std::string, TopicConfigs>> configs =
      admin->DescribeTopicConfigs({"compacted", "short-lived"}, 10s);
  ASSERT_TRUE(configs.ok()) << configs.error();
  ASSERT_EQ(configs->size(), 2u);
  const TopicConfigs& compacted = configs->at("compacted");
  ASSERT_TRUE(compacted.status.ok()) << compacted.status;
  EXPECT_EQ(compacted.values.at("cleanup.policy"), "compact");
  EXPECT_EQ(compacted.values.at("retention.ms"), "604800000");  // the broker's default
  const TopicConfigs& short_lived = configs->at("short-lived");
  ASSERT_TRUE(short_lived.status.ok()) << short_lived.status;
  EXPECT_EQ(short_lived.values.at("cleanup.policy"), "delete");
  EXPECT_EQ(short_lived.values.at("retention.ms"), "3600000");

  // One CreateTopics and one DescribeConfigs request went to the controller.
  const std::vector<std::string> requests = fake->Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_NE(requests[0].find("\"CreateTopics\""), std::string::npos) << requests[0];
  EXPECT_NE(requests[1].find("\"DescribeConfigs\""), std::string::npos) << requests[1];
}

TEST(KafkaAdmin, CreateTopicsAnswersPerTopicExistingCreatedOrWhyNot) {
  // One broker that already has `existing`: replication 3 cannot be met.
  auto fake = StartFake({"--brokers", "1", "--topic", "existing:4:1:cleanup.policy=compact"});
  ASSERT_TRUE(fake);
  auto admin = MakeAdmin(fake->bootstrap());
  ASSERT_TRUE(admin);
  Result<std::vector<CreateTopicResult>> created =
      admin->CreateTopics({{.name = "existing", .partitions = 8, .replication = 1},
                           {.name = "fresh", .partitions = 2, .replication = 1},
                           {.name = "too-replicated", .partitions = 2, .replication = 3}},
                          10s);
  ASSERT_TRUE(created.ok()) << created.error();
  std::map<std::string, Status> by_name;
  for (const CreateTopicResult& r : *created) by_name[r.name] = r.status;
  ASSERT_EQ(by_name.size(), 3u);
  EXPECT_EQ(by_name["existing"].code(), StatusCode::kAlreadyExists) << by_name["existing"];
  EXPECT_TRUE(by_name["fresh"].ok()) << by_name["fresh"];
  EXPECT_FALSE(by_name["too-replicated"].ok());
  EXPECT_EQ(by_name["too-replicated"].message(),
            "Replication factor: 3 larger than available brokers: 1.");

  Result<std::map<std::string, TopicDescription>> listed = admin->ListTopics(5s);
  ASSERT_TRUE(listed.ok()) << listed.error();
  EXPECT_EQ(listed->at("existing").partitions, 4);  // left as it was
  EXPECT_EQ(listed->at("fresh").partitions, 2);
  EXPECT_FALSE(listed->contains("too-replicated"));
}

TEST(KafkaAdmin, DescribeTopicConfigsSaysWhichTopicTheClusterWouldNotDescribe) {
  auto fake = StartFake({"--topic", "open:1:1:retention.ms=1000", "--topic", "secret:1:1",
                         "--deny-describe-configs", "secret"});
  ASSERT_TRUE(fake);
  auto admin = MakeAdmin(fake->bootstrap());
  ASSERT_TRUE(admin);
  Result<std::map<std::string, TopicConfigs>> configs =
      admin->DescribeTopicConfigs({"open", "secret"}, 10s);
  ASSERT_TRUE(configs.ok()) << configs.error();
  ASSERT_TRUE(configs->at("open").status.ok()) << configs->at("open").status;
  EXPECT_EQ(configs->at("open").values.at("retention.ms"), "1000");
  EXPECT_FALSE(configs->at("secret").status.ok());
  EXPECT_EQ(configs->at("secret").status.message(), "Broker: Topic authorization failed");
  EXPECT_TRUE(configs->at("secret").values.empty());
}

TEST(KafkaAdmin, BadPropertiesAreInvalidArguments) {
  Status bad = CheckProperty("no.such.property", "1");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("no.such.property"), std::string::npos) << bad;
  EXPECT_TRUE(CheckProperty("linger.ms", "5").ok());
  Result<std::unique_ptr<Admin>> admin =
      Admin::Create({{"bootstrap.servers", "127.0.0.1:1"}, {"no.such.property", "1"}});
  ASSERT_FALSE(admin.ok());
  EXPECT_EQ(admin.error().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flamestream::kafka::broker_test
