// The flamestream-devbroker binary: flags, readiness line, forwarder failover, signals.
#include <gtest/gtest.h>
#include <signal.h>

#include "flamestream/common/strings.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::devbroker {
namespace {

using namespace std::chrono_literals;
using flamestream::testing::BinPath;
using flamestream::testing::DevBroker;
using flamestream::testing::DevBrokerOptions;
using flamestream::testing::ExitStatus;
using flamestream::testing::Subprocess;
using flamestream::testing::SubprocessOptions;

std::vector<std::string> RunToEnd(std::vector<std::string> argv) {
  SubprocessOptions o;
  o.argv = std::move(argv);
  auto p = Subprocess::Start(o);
  EXPECT_TRUE(p.ok()) << p.error();
  if (!p.ok()) return {};
  std::vector<std::string> out;
  for (Result<std::string> l = (*p)->ReadLine(20s); l.ok(); l = (*p)->ReadLine(20s)) {
    out.push_back(*l);
  }
  Result<ExitStatus> st = (*p)->Wait(10s);
  EXPECT_TRUE(st.ok() && st->exited && st->code == 0) << o.argv[0];
  return out;
}

TEST(DevBrokerBinary, HelpDocumentsFlagsTopicsAndCommands) {
  Result<std::string> bin = BinPath("flamestream-devbroker");
  ASSERT_TRUE(bin.ok()) << bin.error();
  std::string help = common::Join(RunToEnd({*bin, "--help"}), "\n");
  for (const char* want : {"--brokers", "--port", "--topics", "--partitions", "--admin-port",
                           "in memory", "flamestream.samples.raw.v1", "otlp_spans",
                           "broker <id> down", "error <Api> <count> <ERR>"}) {
    EXPECT_NE(help.find(want), std::string::npos) << want;
  }
}

TEST(DevBrokerBinary, BadFlagExitsTwo) {
  Result<std::string> bin = BinPath("flamestream-devbroker");
  ASSERT_TRUE(bin.ok());
  auto p = Subprocess::Start({.argv = {*bin, "--brokers", "zero"}});
  ASSERT_TRUE(p.ok());
  Result<ExitStatus> st = (*p)->Wait(10s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, (ExitStatus{true, 2, 0}));
}

TEST(DevBrokerBinary, MetadataThroughForwarderListsTopicsEvenWithABrokerDown) {
  DevBrokerOptions o;
  o.topics = {"extra-a:3", "extra-b"};
  o.partitions = 2;
  auto b = DevBroker::Start(o);
  ASSERT_TRUE(b.ok()) << b.error();
  std::string meta = common::Join(RunToEnd({"kcat", "-b", (*b)->bootstrap(), "-L"}), "\n");
  EXPECT_NE(meta.find(" 3 brokers:"), std::string::npos) << meta;
  EXPECT_NE(meta.find("topic \"extra-a\" with 3 partitions"), std::string::npos);
  EXPECT_NE(meta.find("topic \"extra-b\" with 2 partitions"), std::string::npos);
  EXPECT_NE(meta.find("topic \"flamestream.spans.keyed.v1.dlq\" with 2 partitions"),
            std::string::npos);
  // The forwarder skips a downed broker: bootstrapping keeps working on every connection.
  ASSERT_TRUE((*b)->Command("broker 1 down").ok());
  for (int i = 0; i < 3; ++i) {
    std::string again = common::Join(RunToEnd({"kcat", "-b", (*b)->bootstrap(), "-L"}), "\n");
    EXPECT_NE(again.find("topic \"extra-a\""), std::string::npos) << again;
  }
}

TEST(DevBrokerBinary, ExitsZeroOnSigint) {
  auto b = DevBroker::Start({.brokers = 1});
  ASSERT_TRUE(b.ok()) << b.error();
  ASSERT_TRUE((*b)->process().Signal(SIGINT).ok());
  Result<ExitStatus> st = (*b)->process().Wait(10s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, (ExitStatus{true, 0, 0}));
}

}  // namespace
}  // namespace flamestream::devbroker
