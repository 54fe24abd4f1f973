// `flamestream top|diff|folded` reading from a Pyroscope URL: the URL parser on the forms
// Pyroscope's UI writes, and the binary against a test server that speaks the Connect query
// call (querier.v1.QuerierService/SelectMergeProfile), decodes each request with our schema,
// checks it, and answers with pprof of known content.
#include <httplib.h>

#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "cli_test_util.h"
#include "flamestream/pprofutil/builder.h"
#include "flamestream/pprofutil/profile_io.h"
#include "pyroscope/querier/v1/querier.pb.h"
#include "pyroscope_source.h"

namespace flamestream::cli_test {
namespace {

using cli::ParsePyroscopeUrl;
using cli::PyroscopeQuery;
using pprofutil::ProfileBuilder;
constexpr int64_t kMs = 1'000'000;
// 2026-11-23T12:00:00Z
constexpr int64_t kNowMs = 1'795'435'200'000;
constexpr int64_t kNowNs = kNowMs * kMs;
constexpr int64_t kHourMs = 3'600'000;

TEST(PyroscopeUrl, ParsesTheFormsTheUiWrites) {
  struct Case {
    std::string url;
    std::string base, user, password, type, selector;
    int64_t start_ms, end_ms;
  };
  const std::string cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
  const std::vector<Case> cases = {
      {"http://pyro:4040", "http://pyro:4040", "", "", cpu, "{}", kNowMs - kHourMs, kNowMs},
      {"http://pyro:4040/?query=process_cpu%3Acpu%3Ananoseconds%3Acpu%3Ananoseconds%7Bservice_"
       "name%3D%22shop%22%7D&from=now-2h&until=now-1h",
       "http://pyro:4040", "", "", cpu, "{service_name=\"shop\"}", kNowMs - 2 * kHourMs,
       kNowMs - kHourMs},
      {"https://u%40x:p%3Aw@grafana.example/pyroscope/?query={service_name=\"a b\",pod=~\"web-.*\"}"
       "&from=1795431600&until=1795435200000",
       "https://grafana.example/pyroscope", "u@x", "p:w", cpu,
       "{service_name=\"a b\",pod=~\"web-.*\"}", kNowMs - kHourMs, kNowMs},
      {"http://pyro:4040/?query=memory:alloc_space:bytes:space:bytes{}&from=now-15m",
       "http://pyro:4040", "", "", "memory:alloc_space:bytes:space:bytes", "{}",
       kNowMs - 15 * 60'000, kNowMs},
      {"http://pyro:4040/?query={x=\"q\\\"uote\"}", "http://pyro:4040", "", "", cpu,
       "{x=\"q\\\"uote\"}", kNowMs - kHourMs, kNowMs},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    Result<PyroscopeQuery> q = ParsePyroscopeUrl(c.url, kNowNs);
    ASSERT_TRUE(q.ok()) << q.error();
    EXPECT_EQ(q->base_url, c.base);
    EXPECT_EQ(q->user, c.user);
    EXPECT_EQ(q->password, c.password);
    EXPECT_EQ(q->profile_type, c.type);
    EXPECT_EQ(cli::Selector(*q), c.selector);
    EXPECT_EQ(q->start_ms, c.start_ms);
    EXPECT_EQ(q->end_ms, c.end_ms);
  }
}

TEST(PyroscopeUrl, RejectsBadPartsNamingThem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://pyro:4040/?from=yesterday", "from=yesterday"},
      {"http://pyro:4040/?from=now&until=now-1h", "is not after"},
      {"http://pyro:4040/?query=cpu{a=\"b\"}", "profile type \"cpu\""},
      {"http://pyro:4040/?query={a=\"b\"", "must end with '}'"},
      {"http://pyro:4040/?query={a}", "\"a\" is not a label matcher"},
      {"http://pyro:4040/?query={a=\"b}", "unterminated quote"},
      {"http://pyro:4040/?query=%7", "truncated %-escape"},
      {"http:///?query={}", "no host"},
  };
  for (const auto& [url, want] : cases) {
    SCOPED_TRACE(url);
    Result<PyroscopeQuery> q = ParsePyroscopeUrl(url, kNowNs);
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.error().message().find(want), std::string::npos) << q.error();
  }
}

// A Pyroscope query endpoint: answers SelectMergeProfile with `before` for ranges that end
// more than 30 min ago and `after` otherwise, and records every decoded request.
class FakeQuerier {
 public:
  struct Seen {
    querier::v1::SelectMergeProfileRequest req;
    std::string tenant, auth, content_type, connect_version;
  };

  FakeQuerier(std::string before, std::string after)
      : before_(std::move(before)), after_(std::move(after)) {
    server_.Post("/prefix/querier.v1.QuerierService/SelectMergeProfile",
                 [this](const httplib::Request& r, httplib::Response& w) {
                   Seen s;
                   if (!s.req.ParseFromString(r.body)) {
                     w.status = 400;
                     w.set_content(R"({"code":"invalid_argument","message":"bad body"})",
                                   "application/json");
                     return;
                   }
                   s.tenant = r.get_header_value("X-Scope-OrgID");
                   s.auth = r.get_header_value("Authorization");
                   s.content_type = r.get_header_value("Content-Type");
                   s.connect_version = r.get_header_value("Connect-Protocol-Version");
                   const bool refuse = s.req.label_selector().find("refuse") != std::string::npos;
                   const bool old = s.req.end() < kNowWall() - 30 * 60'000;
                   {
                     std::lock_guard lock(mu_);
                     seen_.push_back(s);
                   }
                   if (refuse) {
                     w.status = 400;
                     w.set_content(R"({"code":"invalid_argument","message":"parse error at 1:2"})",
                                   "application/json");
                     return;
                   }
                   w.set_content(old ? before_ : after_, "application/proto");
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");  // bound before the thread: no race
    EXPECT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeQuerier() {
    server_.stop();
    thread_.join();
  }
  std::string Url(const std::string& rest) const {
    return fmt::format("http://127.0.0.1:{}/prefix/{}", port_, rest);
  }
  std::string AuthUrl(const std::string& rest) const {
    return fmt::format("http://alice:s3cret@127.0.0.1:{}/prefix/{}", port_, rest);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  static int64_t kNowWall() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

 private:
  std::string before_, after_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

std::string Pprof(const std::vector<std::pair<std::string, int64_t>>& folded) {
  ProfileBuilder b;
  for (const auto& [stack, ms] : folded) b.AddFolded(stack, ms * kMs);
  return b.Build().SerializeAsString();
}

TEST(FlamestreamTop, ReadsAPyroscopeUrlWithFiltersAsMatchers) {
  FakeQuerier server(Pprof({{"main;old", 100}}),
                     Pprof({{"main;handle;crc32", 600}, {"main;handle;memcpy", 300},
                            {"main;idle", 100}}));
  const int64_t before_call = FakeQuerier::kNowWall();
  CliRun r = RunCli({"top", "--service", "shop", "--span", "GET /cart", "--tenant", "team-a",
                     server.AuthUrl("?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds"
                                    "%7Bpod%3D~%22web-.*%22%7D&from=now-10m")});
  ASSERT_EQ(r.exit, 0) << r.output;
  EXPECT_EQ(r.output,
            "Type: cpu\n"
            "Showing 5 of 5 functions, 1s (100.00%) of 1s total\n"
            "      flat  flat%   sum%        cum   cum%\n"
            "     600ms 60.00% 60.00%      600ms 60.00%  crc32\n"
            "     300ms 30.00% 90.00%      300ms 30.00%  memcpy\n"
            "     100ms 10.00% 100.00%      100ms 10.00%  idle\n"
            "         0  0.00% 100.00%         1s 100.00%  main\n"
            "         0  0.00% 100.00%      900ms 90.00%  handle\n");
  const std::vector<FakeQuerier::Seen> seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  const FakeQuerier::Seen& s = seen[0];
  EXPECT_EQ(s.req.profile_type_id(), "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
  EXPECT_EQ(s.req.label_selector(),
            "{service_name=\"shop\",span_name=\"GET /cart\",pod=~\"web-.*\"}");
  EXPECT_NEAR(static_cast<double>(s.req.end()), static_cast<double>(before_call), 5'000);
  EXPECT_EQ(s.req.end() - s.req.start(), 10 * 60'000);
  EXPECT_EQ(s.tenant, "team-a");
  EXPECT_EQ(s.auth, "Basic YWxpY2U6czNjcmV0");  // alice:s3cret
  EXPECT_EQ(s.content_type, "application/proto");
  EXPECT_EQ(s.connect_version, "1");
}

TEST(FlamestreamDiff, ComparesTwoPyroscopeRanges) {
  FakeQuerier server(Pprof({{"main;a", 750}, {"main;b", 250}}),
                     Pprof({{"main;a", 250}, {"main;b", 750}}));
  CliRun r = RunCli({"folded", server.Url("?from=now-2h&until=now-1h")});
  ASSERT_EQ(r.exit, 0) << r.output;
  EXPECT_EQ(r.output, "main;a 750000000\nmain;b 250000000\n");
  r = RunCli({"diff", "--by", "self", server.Url("?from=now-2h&until=now-1h"),
              server.Url("?from=now-1h")});
  ASSERT_EQ(r.exit, 0) << r.output;
  EXPECT_NE(r.output.find("+50.00%"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("-50.00%"), std::string::npos) << r.output;
  EXPECT_EQ(server.seen().size(), 3u);
}

TEST(FlamestreamTop, ServerErrorsAndBadUrlsExitTwoWithTheReason) {
  FakeQuerier server(Pprof({{"main", 1}}), Pprof({{"main", 1}}));
  CliRun r = RunCli({"top", server.Url("?query=%7Brefuse%3D%22x%22%7D")}, /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 2);
  EXPECT_NE(r.output.find("HTTP 400"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("parse error at 1:2"), std::string::npos) << r.output;

  r = RunCli({"top", server.Url("?from=soon")}, /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 2);
  EXPECT_NE(r.output.find("from=soon"), std::string::npos) << r.output;

  Result<int> closed = testing::FreePort();
  ASSERT_TRUE(closed.ok());
  r = RunCli({"top", fmt::format("http://127.0.0.1:{}/", *closed)}, /*merge_stderr=*/true);
  EXPECT_EQ(r.exit, 2);
  EXPECT_NE(r.output.find("Connection"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace flamestream::cli_test
