#include "controller.h"

#include <gtest/gtest.h>

#include "flamestream/kafka/handles.h"

namespace flamestream::devbroker {
namespace {

TEST(ParseTopics, NamesWithOptionalPartitions) {
  Result<std::vector<TopicSpec>> t = ParseTopics("a:4, b ,c:1", 8);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(*t, (std::vector<TopicSpec>{{"a", 4}, {"b", 8}, {"c", 1}}));
  EXPECT_TRUE(ParseTopics("", 8)->empty());
  for (const char* bad : {"a:0", "a:x", ":3", "a:-1"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseTopics(bad, 8).ok());
  }
}

TEST(ParseApiKey, NamesAndNumbers) {
  struct Case {
    const char* in;
    int16_t want;
  } cases[] = {{"Produce", 0},     {"produce", 0},    {"ProduceRequest", 0},  {"Fetch", 1},
               {"ListOffsets", 2}, {"JoinGroup", 11}, {"InitProducerId", 22}, {"18", 18}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    Result<int16_t> k = ParseApiKey(c.in);
    ASSERT_TRUE(k.ok()) << k.error();
    EXPECT_EQ(*k, c.want);
  }
  EXPECT_FALSE(ParseApiKey("Nope").ok());
}

TEST(ParseErrorCode, KafkaErrorNames) {
  struct Case {
    const char* in;
    rd_kafka_resp_err_t want;
  } cases[] = {
      {"BROKER_NOT_AVAILABLE", RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE},
      {"broker_not_available", RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE},
      {"ERR_NOT_LEADER_FOR_PARTITION", RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION},
      {"_TRANSPORT", RD_KAFKA_RESP_ERR__TRANSPORT},
      {"none", RD_KAFKA_RESP_ERR_NO_ERROR},
      {"7", RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    Result<rd_kafka_resp_err_t> e = ParseErrorCode(c.in);
    ASSERT_TRUE(e.ok()) << e.error();
    EXPECT_EQ(*e, c.want);
  }
  EXPECT_FALSE(ParseErrorCode("NO_SUCH_ERROR").ok());
}

// The controller against an in-process mock cluster.
class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char err[256];
    rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof err));
    ASSERT_TRUE(rk_);
    mcluster_ = rd_kafka_mock_cluster_new(rk_.get(), 3);
    ASSERT_NE(mcluster_, nullptr);
  }
  void TearDown() override {
    if (mcluster_ != nullptr) rd_kafka_mock_cluster_destroy(mcluster_);
  }
  kafka::KafkaHandle rk_;
  rd_kafka_mock_cluster_t* mcluster_ = nullptr;
};

TEST_F(ControllerTest, AnswersOkOrErrorForEachCommand) {
  Controller c(mcluster_, 3);
  struct Case {
    const char* line;
    const char* want;
  } cases[] = {
      {"broker 2 down", "ok"},
      {"broker 2 up", "ok"},
      {"broker 1 rtt 500ms", "ok"},
      {"broker 1 rtt 0", "ok"},
      {"broker 3 error Fetch NOT_LEADER_FOR_PARTITION 10ms", "ok"},
      {"error Produce 6 BROKER_NOT_AVAILABLE", "ok"},
      {"error Produce 2 BROKER_NOT_AVAILABLE REQUEST_TIMED_OUT", "ok"},
      {"error Produce clear", "ok"},
      {"topic create t1 4", "ok"},
      {"topic error t1 UNKNOWN_TOPIC_OR_PART", "ok"},
      {"leader t1 0 3", "ok"},
      {"coordinator group g1 2", "ok"},
      {"broker 4 down", "error: no broker 4 (1..3)"},
      {"broker 1 sideways",
       "error: usage: broker <id> down|up|rtt <duration>|error <Api> <ERR> [rtt]"},
      {"broker 1 rtt soon", "error: "},
      {"error Produce 3 A B", "error: "},
      {"error Produce 0 BROKER_NOT_AVAILABLE", "error: error count \"0\" must be 1..100000"},
      {"error Bogus 1 BROKER_NOT_AVAILABLE", "error: unknown request type"},
      {"frobnicate", "error: unknown command \"frobnicate\" (try help)"},
      {"", "error: empty command (try help)"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.line);
    std::vector<std::string> out = c.Execute(tc.line);
    ASSERT_FALSE(out.empty());
    EXPECT_TRUE(out.back().starts_with(tc.want)) << out.back();
  }
}

TEST_F(ControllerTest, TracksBrokerStateForTheForwarder) {
  Controller c(mcluster_, 3);
  EXPECT_TRUE(c.BrokerUp(2));
  ASSERT_EQ(c.Execute("broker 2 down").back(), "ok");
  EXPECT_FALSE(c.BrokerUp(2));
  EXPECT_TRUE(c.BrokerUp(1));
  ASSERT_EQ(c.Execute("broker 2 up").back(), "ok");
  EXPECT_TRUE(c.BrokerUp(2));
  EXPECT_FALSE(c.BrokerUp(0));
  EXPECT_FALSE(c.BrokerUp(4));
}

TEST_F(ControllerTest, HelpListsEveryCommandThenOk) {
  Controller c(mcluster_, 3);
  std::vector<std::string> out = c.Execute("help");
  ASSERT_GT(out.size(), 5u);
  EXPECT_EQ(out.back(), "ok");
  std::string all;
  for (const std::string& l : out) all += l + "\n";
  for (const char* cmd : {"broker <id> down", "broker <id> up", "broker <id> rtt", "error <Api>",
                          "topic create", "leader", "coordinator", "help"}) {
    EXPECT_NE(all.find(cmd), std::string::npos) << cmd;
  }
}

}  // namespace
}  // namespace flamestream::devbroker
