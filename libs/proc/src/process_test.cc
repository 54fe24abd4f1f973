#include "flamestream/proc/process.h"

#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace flamestream::proc {
namespace {

TEST(ParseStatStartTicks, CountsFieldsAfterTheLastParenthesis) {
  struct Case {
    const char* name;
    const char* stat;
    uint64_t ticks;
  };
  const Case cases[] = {
      {"plain", "42 (bash) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0", 98765},
      {"spaces and parens in comm",
       "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 0 0", 777},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<uint64_t> t = ParseStatStartTicks(c.stat);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(*t, c.ticks);
  }
  EXPECT_FALSE(ParseStatStartTicks("42 bash S 1").ok());
  EXPECT_FALSE(ParseStatStartTicks("42 (bash) S 1 2 3").ok());
  EXPECT_FALSE(ParseStatStartTicks("42 (x) S 1 42 42 0 -1 4 1 0 0 0 0 0 0 0 20 0 1 0 zz 0").ok());
}

TEST(ParseStatus, ReadsAllNamespaceLevels) {
  Result<ProcStatus> st = ParseStatus(
      "Name:\tworker\nUmask:\t0022\nState:\tR (running)\nTgid:\t4711\nNgid:\t0\n"
      "Pid:\t4712\nPPid:\t4700\nNStgid:\t4711\t12\t1\nNSpid:\t4712\t13\t2\n");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->name, "worker");
  EXPECT_EQ(st->tgid, 4711u);
  EXPECT_EQ(st->pid, 4712u);
  EXPECT_EQ(st->ppid, 4700u);
  EXPECT_EQ(st->nstgid, (std::vector<uint32_t>{4711, 12, 1}));
  EXPECT_EQ(st->nspid, (std::vector<uint32_t>{4712, 13, 2}));
}

TEST(ParseStatus, OldKernelsWithoutNSpidFallBackToHostPid) {
  Result<ProcStatus> st = ParseStatus("Name:\tx\nTgid:\t5\nPid:\t6\nPPid:\t1\n");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->nstgid, (std::vector<uint32_t>{5}));
  EXPECT_EQ(st->nspid, (std::vector<uint32_t>{6}));
  EXPECT_FALSE(ParseStatus("Name:\tx\n").ok());
  EXPECT_FALSE(ParseStatus("Tgid:\tabc\n").ok());
}

TEST(ReadProcessInfo, DescribesThisProcess) {
  Result<ProcessInfo> info = ReadProcessInfo(static_cast<uint32_t>(::getpid()),
                                             {.cmdline = true});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(info->nspids.front(), info->pid);
  EXPECT_EQ(info->comm, std::string("proc_test").substr(0, 15));
  EXPECT_NE(info->exe.find("proc_test"), std::string::npos);
  EXPECT_NE(info->cmdline.find("proc_test"), std::string::npos);
  // Started before now, and not before a day ago (the test binary is young).
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const uint64_t now_ns = static_cast<uint64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
  EXPECT_LE(info->start_wall_ns, now_ns + 20'000'000);
  EXPECT_GT(info->start_wall_ns, now_ns - 86'400'000'000'000);
  EXPECT_GT(info->cgroup.version, 0);
}

TEST(ReadProcessInfo, GoneProcessIsNotFound) {
  Result<ProcessInfo> info = ReadProcessInfo(0x7ffffff0);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace flamestream::proc
