#include "flamestream/profile/privacy.h"

#include <gtest/gtest.h>

namespace flamestream::profile {
namespace {

TEST(Privacy, AllowAndDenyWithPrefixPatterns) {
  Privacy all;
  for (std::string_view n : kLabelNames) EXPECT_TRUE(all.Keeps(n)) << n;

  Privacy deny({.deny = {"container_*", "k8s_pod_uid", "thread_name"}});
  EXPECT_TRUE(deny.Keeps("node"));
  EXPECT_TRUE(deny.Keeps("span_id"));
  EXPECT_FALSE(deny.Keeps("container_id"));
  EXPECT_FALSE(deny.Keeps("k8s_pod_uid"));
  EXPECT_FALSE(deny.Keeps("thread_name"));

  // allow keeps only what it names (service_name always), deny wins over allow.
  Privacy allow({.allow = {"cluster", "span_*"}, .deny = {"span_name"}});
  EXPECT_TRUE(allow.Keeps("service_name"));
  EXPECT_TRUE(allow.Keeps("cluster"));
  EXPECT_TRUE(allow.Keeps("span_id"));
  EXPECT_FALSE(allow.Keeps("span_name"));
  EXPECT_FALSE(allow.Keeps("node"));
  EXPECT_FALSE(allow.Keeps("trace_id"));
}

TEST(Privacy, PathRulesRewriteTheFirstMatchingPrefix) {
  Privacy p({.paths = {{.from = "/home/*/", .to = "/home/<user>/"},
                       {.from = "/builds/*/*/", .to = ""},
                       {.from = "/home/", .to = "never/"}}});
  EXPECT_EQ(p.ScrubPath("/home/alice/src/app/main.cc"), "/home/<user>/src/app/main.cc");
  EXPECT_EQ(p.ScrubPath("/builds/runner-7f3a/acme/src/x.cc"), "src/x.cc");
  EXPECT_EQ(p.ScrubPath("/usr/lib/libc.so.6"), "/usr/lib/libc.so.6");
  // A '*' is one segment: "/home/alice" without the trailing '/' does not match rule one.
  EXPECT_EQ(p.ScrubPath("/home/alice"), "never/alice");
  EXPECT_EQ(p.ScrubPath(""), "");
  EXPECT_TRUE(p.rewrites_paths());
  EXPECT_FALSE(Privacy().rewrites_paths());
}

TEST(Privacy, ConfigMistakesSayWhatIsWrong) {
  Result<PathRule> r = ParsePathRule("/home/*/=/home/u/");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->from, "/home/*/");
  EXPECT_EQ(r->to, "/home/u/");
  EXPECT_TRUE(ParsePathRule("/opt/=").ok());  // strip a prefix
  EXPECT_NE(ParsePathRule("no-equals").error().message().find("expected from=to"),
            std::string::npos);
  EXPECT_FALSE(ParsePathRule("=/x").ok());
  EXPECT_NE(ParsePathRule("/a/**/=/b").error().message().find("'**' is not supported"),
            std::string::npos);

  EXPECT_TRUE(ValidateLabelPatterns({"cluster", "span_*"}, false).ok());
  Status typo = ValidateLabelPatterns({"node", "pod_uid"}, true);
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.message().find("'pod_uid' names no label"), std::string::npos) << typo;
  EXPECT_FALSE(ValidateLabelPatterns({"*"}, false).ok());
  EXPECT_TRUE(ValidateLabelPatterns({"service_name"}, false).ok());  // allowing it is fine
  Status service = ValidateLabelPatterns({"service_*"}, true);
  ASSERT_FALSE(service.ok());
  EXPECT_NE(service.message().find("service_name is the series identity"), std::string::npos);
}

}  // namespace
}  // namespace flamestream::profile
