#include <gtest/gtest.h>
#include <signal.h>

#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/redis_server.h"
#include "flamestream/testing/subprocess.h"

namespace flamestream::testing {
namespace {

using namespace std::chrono_literals;

TEST(Subprocess, ReadsLinesPassesEnvAndReportsExitCode) {
  SubprocessOptions o;
  o.argv = {"sh", "-c", "echo one; echo \"$FS_TEST_VAR\"; printf last; exit 3"};
  o.env = {{"FS_TEST_VAR", "two"}};
  auto p = Subprocess::Start(o);
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ((*p)->ReadLine(5s).value_or("?"), "one");
  EXPECT_EQ((*p)->ReadLine(5s).value_or("?"), "two");
  EXPECT_EQ((*p)->ReadLine(5s).value_or("?"), "last");  // unterminated final line
  EXPECT_EQ((*p)->ReadLine(5s).status().code(), StatusCode::kNotFound);
  Result<ExitStatus> st = (*p)->Wait(5s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(*st, (ExitStatus{true, 3, 0}));
}

TEST(Subprocess, StdinSignalAndTimeouts) {
  SubprocessOptions o;
  o.argv = {"cat"};
  o.pipe_stdin = true;
  auto p = Subprocess::Start(o);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->WriteStdin("hello\n").ok());
  EXPECT_EQ((*p)->ReadLine(5s).value_or("?"), "hello");
  EXPECT_EQ((*p)->ReadLine(50ms).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*p)->Wait(50ms).status().code(), StatusCode::kDeadlineExceeded);
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  Result<ExitStatus> st = (*p)->Wait(5s);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->signal, SIGTERM);
  EXPECT_FALSE((*p)->running());
}

TEST(Subprocess, MissingProgramIsNotFound) {
  auto p = Subprocess::Start({.argv = {"flamestream-no-such-program"}});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code(), StatusCode::kNotFound);
}

TEST(FreePort, GivesABindablePort) {
  Result<int> port = FreePort();
  ASSERT_TRUE(port.ok());
  EXPECT_GT(*port, 0);
  EXPECT_LT(*port, 65536);
  EXPECT_FALSE(ConnectLoopback(*port, 1s).ok()) << "nothing listens there";
}

TEST(RedisServer, AnswersPingAndComesBackAfterKill) {
  auto r = RedisServer::Start();
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE((*r)->Ping());
  const int port = (*r)->port();
  (*r)->Kill();
  EXPECT_FALSE((*r)->Ping());
  ASSERT_TRUE((*r)->Restart().ok());
  EXPECT_TRUE((*r)->Ping());
  EXPECT_EQ((*r)->port(), port);
}

TEST(DevBroker, CommandsViaStdinAndAdminPortAndCleanStop) {
  for (bool admin : {false, true}) {
    SCOPED_TRACE(admin ? "admin port" : "stdin");
    DevBrokerOptions o;
    o.brokers = 2;
    o.use_admin_port = admin;
    auto b = DevBroker::Start(o);
    ASSERT_TRUE(b.ok()) << b.error();
    EXPECT_TRUE((*b)->bootstrap().starts_with("127.0.0.1:")) << (*b)->bootstrap();
    EXPECT_EQ((*b)->admin_port() > 0, admin);
    EXPECT_TRUE((*b)->Command("broker 2 down").ok());
    EXPECT_TRUE((*b)->Command("broker 2 up").ok());
    EXPECT_TRUE((*b)->Command("help").ok());
    Status bad = (*b)->Command("broker 3 down");
    EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(bad.message(), "no broker 3 (1..2)");
    EXPECT_TRUE((*b)->Stop().ok());
  }
}

}  // namespace
}  // namespace flamestream::testing
