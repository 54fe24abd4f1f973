#include "flamestream/obs/metrics.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <thread>

#include "flamestream/obs/admin_server.h"

namespace flamestream::obs {
namespace {

TEST(Registry, RendersPrometheusTextFormat) {
  Registry r;
  r.Counter("fs_records_in_total", "Input records", {{"stage", "sym"}}).Inc(5);
  r.Counter("fs_records_in_total", "Input records", {{"stage", "sym"}}).Inc(2);  // same object
  r.Gauge("fs_lag", "Lag", {{"partition", "3"}}).Set(42);
  Histogram& h = r.Histogram("fs_latency_seconds", "Latency", {0.1, 1});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(5);
  EXPECT_EQ(r.Render(),
            "# HELP fs_lag Lag\n# TYPE fs_lag gauge\nfs_lag{partition=\"3\"} 42\n"
            "# HELP fs_latency_seconds Latency\n# TYPE fs_latency_seconds histogram\n"
            "fs_latency_seconds_bucket{le=\"0.1\"} 1\nfs_latency_seconds_bucket{le=\"1\"} 2\n"
            "fs_latency_seconds_bucket{le=\"+Inf\"} 3\nfs_latency_seconds_sum 5.55\n"
            "fs_latency_seconds_count 3\n"
            "# HELP fs_records_in_total Input records\n# TYPE fs_records_in_total counter\n"
            "fs_records_in_total{stage=\"sym\"} 7\n");
}

TEST(Registry, CountersAreExactUnderConcurrency) {
  Registry r;
  Counter& c = r.Counter("c_total", "c");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) c.Inc();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 400000u);
}

TEST(Registry, CollectorsRunBeforeRender) {
  Registry r;
  int calls = 0;
  r.AddCollector([&] { r.Gauge("g", "g").Set(++calls); });
  EXPECT_NE(r.Render().find("g 1\n"), std::string::npos);
  EXPECT_NE(r.Render().find("g 2\n"), std::string::npos);
}

TEST(Registry, CounterFollowsAComponentsOwnTotalAndNeverGoesBack) {
  Registry r;
  uint64_t total = 5;
  r.AddCollector([&] { r.Counter("hits_total", "hits").Follow(total); });
  EXPECT_NE(r.Render().find("# TYPE hits_total counter\nhits_total 5\n"), std::string::npos)
      << r.Render();
  total = 9;
  EXPECT_NE(r.Render().find("hits_total 9\n"), std::string::npos);
  total = 3;  // a smaller total (the component was replaced) must not make a counter decrease
  EXPECT_NE(r.Render().find("hits_total 9\n"), std::string::npos);
}

TEST(AdminServer, ServesMetricsHealthAndReadiness) {
  Registry r;
  r.Counter("fs_up_total", "up").Inc();
  auto admin = AdminServer::Start("127.0.0.1:0", r);
  ASSERT_TRUE(admin.ok()) << admin.error();
  httplib::Client cli("127.0.0.1", (*admin)->port());
  auto m = cli.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("fs_up_total 1"), std::string::npos);
  EXPECT_EQ(cli.Get("/healthz")->status, 200);
  EXPECT_EQ(cli.Get("/readyz")->status, 503);
  (*admin)->SetReady(true);
  EXPECT_EQ(cli.Get("/readyz")->status, 200);
  (*admin)->SetUnhealthy("kafka fatal");
  auto h = cli.Get("/healthz");
  EXPECT_EQ(h->status, 503);
  EXPECT_EQ(h->body, "kafka fatal\n");
}

// With a bearer token, /metrics needs it; the probes stay open (kubelet sends no credentials).
TEST(AdminServer, BearerTokenGuardsMetricsButNotTheProbes) {
  Registry r;
  r.Counter("fs_up_total", "up").Inc();
  auto admin = AdminServer::Start("127.0.0.1:0", r, {.bearer_token = "s3cret"});
  ASSERT_TRUE(admin.ok()) << admin.error();
  (*admin)->SetReady(true);
  httplib::Client cli("127.0.0.1", (*admin)->port());
  auto none = cli.Get("/metrics");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(none->body.find("fs_up_total"), std::string::npos);
  for (const char* wrong : {"Bearer s3cre", "Bearer s3cretX", "Basic s3cret", "s3cret"}) {
    auto w = cli.Get("/metrics", {{"Authorization", wrong}});
    ASSERT_TRUE(w);
    EXPECT_EQ(w->status, 401) << wrong;
  }
  auto ok = cli.Get("/metrics", {{"Authorization", "Bearer s3cret"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_NE(ok->body.find("fs_up_total 1"), std::string::npos);
  EXPECT_EQ(cli.Get("/healthz")->status, 200);
  EXPECT_EQ(cli.Get("/readyz")->status, 200);
}

TEST(AdminServer, PortInUseIsAClearError) {
  Registry r;
  auto first = AdminServer::Start("127.0.0.1:0", r);
  ASSERT_TRUE(first.ok());
  auto second = AdminServer::Start("127.0.0.1:" + std::to_string((*first)->port()), r);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("cannot listen on 127.0.0.1:"), std::string::npos);
  EXPECT_FALSE(ParseHostPort("nonsense").ok());
  EXPECT_EQ(ParseHostPort(":9400")->host, "0.0.0.0");
}

}  // namespace
}  // namespace flamestream::obs
