#include "flamestream/common/identity.h"

#include <gtest/gtest.h>

namespace flamestream::common {
namespace {

TEST(NodeKey, FormatsLowerCaseAndParsesBack) {
  const NodeKey k = NodeKey::Of("Prod-EU", "Node-A.Example");
  EXPECT_EQ(k.str(), "prod-eu/node-a.example");
  Result<NodeKey> back = NodeKey::Parse(k.str());
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(*back, k);
  // A key written by hand in another case is the same node.
  EXPECT_EQ(*NodeKey::Parse("PROD-EU/Node-A.example"), k);
}

TEST(NodeKey, RefusesWhatIsNotClusterSlashNode) {
  for (std::string_view bad : {"", "prod", "/node", "prod/"}) {
    Result<NodeKey> k = NodeKey::Parse(bad);
    ASSERT_FALSE(k.ok()) << bad;
    EXPECT_NE(k.error().message().find("is not <cluster>/<node>"), std::string::npos);
  }
}

TEST(ProcessKey, FormatsAndParsesTheProcessesTableKey) {
  const ProcessKey k{NodeKey::Of("prod", "Node-A"), 4242, 987654321};
  EXPECT_EQ(k.str(), "prod/node-a/4242/987654321");
  EXPECT_EQ(k.PidKey(), "prod/node-a/4242");
  Result<ProcessKey> back = ProcessKey::Parse("Prod/Node-A/4242/987654321");
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(*back, k);
  EXPECT_FALSE(ProcessKey::Parse("prod/node-a/4242").ok());
  EXPECT_FALSE(ProcessKey::Parse("prod/node-a/x/1").ok());
  EXPECT_FALSE(ProcessKey::Parse("prod/node-a/0/1").ok());
  EXPECT_FALSE(ProcessKey::Parse("prod/node-a/1/-3").ok());
}

}  // namespace
}  // namespace flamestream::common
