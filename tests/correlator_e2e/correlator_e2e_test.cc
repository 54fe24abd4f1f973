// The correlator end to end with everything real: a Node app using the OpenTelemetry JS SDK
// (tests/spans/otel-app/burn.js: nested "checkout" > "price", "tax" spans that burn CPU, and
// CPU burnt outside any span; its traces split between the OTLP/gRPC and OTLP/HTTP protobuf
// exporters; host and process resource detectors) exports to the correlator's receivers while
// the BPF agent samples it at 99 Hz, the symbolizer and the correlator run on the dev broker.
// The app writes its truth log (each span's name, ids and exported start/end). Every app
// sample on flamestream.samples.correlated.v1 is checked against the innermost truth span at
// its timestamp: >= 90% of those inside a span carry exactly that span's name, trace id and
// span id; those outside every span carry none.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "flamestream/batch/batch.h"
#include "flamestream/batch/cursor.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/consumer.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/testing/dev_broker.h"
#include "flamestream/testing/redis_server.h"
#include "flamestream/testing/subprocess.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace v1 = ::flamestream::v1;
using testing::Subprocess;
using Clock = std::chrono::steady_clock;

constexpr int kBurnMs = 10000;

bool MaySkip() {
  const char* ci = std::getenv("CI");
  return geteuid() != 0 && (ci == nullptr || std::string(ci) != "true");
}

std::string Bin(const std::string& name) {
  Result<std::string> p = testing::BinPath(name);
  return p.ok() ? *p : name;
}

int Port() {
  Result<int> p = testing::FreePort();
  EXPECT_TRUE(p.ok()) << p.error();
  return p.ok() ? *p : 0;
}

// GET http://127.0.0.1:port/path; nullopt unless 200.
std::optional<std::string> Get(int port, const std::string& path) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(1);
  cli.set_read_timeout(2);
  auto res = cli.Get(path);
  if (!res || res->status != 200) return std::nullopt;
  return res->body;
}

bool WaitReady(int admin_port, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (Get(admin_port, "/readyz").has_value()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

// Sum of every sample of `metric` (any labels) in a /metrics page; nullopt when unreachable.
std::optional<double> MetricSum(int admin_port, const std::string& metric) {
  std::optional<std::string> body = Get(admin_port, "/metrics");
  if (!body) return std::nullopt;
  double sum = 0;
  for (const std::string& line : common::Split(*body, '\n')) {
    if (!line.starts_with(metric + "{") && !line.starts_with(metric + " ")) continue;
    const size_t sp = line.rfind(' ');
    if (sp != std::string::npos) sum += std::stod(line.substr(sp + 1));
  }
  return sum;
}

// Waits until the stage has consumed something and its consumer lag is 0 on two scrapes in a
// row (the gauge is refreshed about once a second).
bool WaitCaughtUp(int admin_port, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int zeros = 0;
  while (Clock::now() < deadline) {
    std::optional<double> in = MetricSum(admin_port, "fs_records_in_total");
    std::optional<double> lag = MetricSum(admin_port, "fs_consumer_lag");
    zeros = (in && lag && *in > 0 && *lag == 0) ? zeros + 1 : 0;
    if (zeros >= 2) return true;
    std::this_thread::sleep_for(1200ms);
  }
  return false;
}

// SIGTERM and wait: the stage drains (flushes, produces, commits) before it exits 0.
void Stop(const char* name, Subprocess& p) {
  ASSERT_TRUE(p.Signal(SIGTERM).ok()) << name;
  Result<testing::ExitStatus> st = p.Wait(60s);
  ASSERT_TRUE(st.ok()) << name << ": " << st.error();
  EXPECT_TRUE(st->exited && st->code == 0) << name << " exit " << st->code << " signal "
                                           << st->signal;
}

struct TruthSpan {
  std::string name;
  std::string trace_id;  // hex
  std::string span_id;   // hex
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  std::string via;
};

std::vector<TruthSpan> ReadTruth(const fs::path& file) {
  std::vector<TruthSpan> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    out.push_back({.name = j["name"], .trace_id = j["traceId"], .span_id = j["spanId"],
                   .start_ns = std::stoll(j["startNs"].get<std::string>()),
                   .end_ns = std::stoll(j["endNs"].get<std::string>()),
                   .via = j["via"]});
  }
  return out;
}

// The innermost (latest-starting) truth span holding t, or nullptr.
const TruthSpan* Innermost(const std::vector<TruthSpan>& spans, int64_t t) {
  const TruthSpan* best = nullptr;
  for (const TruthSpan& s : spans) {
    if (s.start_ns <= t && t <= s.end_ns && (best == nullptr || s.start_ns > best->start_ns)) {
      best = &s;
    }
  }
  return best;
}

struct AppSample {
  int64_t t = 0;
  uint32_t tid = 0;
  bool has_span = false;
  std::string name;
  std::string trace_id;  // hex
  std::string span_id;   // hex
};

// Every sample of `pid` on the correlated topic (read from the start until 5 s of quiet).
std::vector<AppSample> ReadCorrelated(const std::string& bootstrap, uint32_t pid) {
  kafka::ConsumerConfig cfg;
  cfg.properties = {{"bootstrap.servers", bootstrap}};
  cfg.group_id = "e2e-reader";
  cfg.topics = {std::string(kafka::topics::kSamplesCorrelated)};
  auto consumer = kafka::Consumer::Create(cfg);
  EXPECT_TRUE(consumer.ok()) << consumer.error();
  std::vector<AppSample> out;
  if (!consumer.ok()) return out;
  auto last = Clock::now();
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() - last < 5s && Clock::now() < deadline) {
    auto m = (*consumer)->Poll(200ms);
    if (!m.ok() || !m->has_value()) continue;
    last = Clock::now();
    v1::SampleBatch b;
    EXPECT_TRUE(b.ParseFromArray((*m)->value().data(), static_cast<int>((*m)->value().size())));
    EXPECT_EQ(b.stage(), v1::STAGE_CORRELATED);
    for (const batch::SampleRow& row : batch::DecodeSamples(b)) {
      if (row.pid != pid) continue;
      AppSample s{.t = row.timestamp_ns, .tid = row.tid};
      if (const v1::SpanRef* ref = batch::SpanOf(b, row.span_index); ref != nullptr) {
        s.has_span = true;
        s.name = ref->name();
        s.trace_id = common::HexEncode(ref->trace_id());
        s.span_id = common::HexEncode(ref->span_id());
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

TEST(CorrelatorE2E, RealSdkAgentAndSymbolizerJoinSamplesWithTheirInnermostSpan) {
  if (MaySkip()) GTEST_SKIP() << "needs root to load BPF (runs in CI, which is root)";
  const char* app_dir = std::getenv("FS_OTEL_APP_DIR");
  if (app_dir == nullptr || !FS_OTEL_APP_INSTALLED ||
      !fs::exists(fs::path(app_dir) / "node_modules")) {
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") FAIL() << "the otel-app was not installed";
    GTEST_SKIP() << "npm not found at configure time: tests/spans/otel-app was not installed";
  }
  const auto started = Clock::now();
  const fs::path dir = fs::temp_directory_path() / fmt::format("fs-corr-e2e-{}", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "spool");

  auto broker = testing::DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string bootstrap = (*broker)->bootstrap();
  auto redis = testing::RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.error();

  const int sym_admin = Port();
  const int corr_admin = Port();
  const int agent_admin = Port();
  const int grpc_port = Port();
  const int http_port = Port();
  const std::string kafka = "kafka.bootstrap.servers=" + bootstrap;

  auto symbolizer = Subprocess::Start(
      {.argv = {Bin("flamestream-symbolizer"), "--admin-listen",
                fmt::format("127.0.0.1:{}", sym_admin), "--set", kafka, "--set",
                "symbolizer.redis.address=" + (*redis)->address()},
       .capture_stdout = false});
  ASSERT_TRUE(symbolizer.ok()) << symbolizer.error();
  auto correlator = Subprocess::Start(
      {.argv = {Bin("flamestream-correlator"), "--admin-listen",
                fmt::format("127.0.0.1:{}", corr_admin), "--set", kafka, "--set",
                fmt::format("correlator.otlp.grpc.listen=127.0.0.1:{}", grpc_port), "--set",
                fmt::format("correlator.otlp.http.listen=127.0.0.1:{}", http_port)},
       .capture_stdout = false});
  ASSERT_TRUE(correlator.ok()) << correlator.error();
  ASSERT_TRUE(WaitReady(sym_admin, 60s)) << "symbolizer not ready";
  ASSERT_TRUE(WaitReady(corr_admin, 60s)) << "correlator not ready";

  const fs::path truth_file = dir / "truth.jsonl";
  const std::string script = FS_OTEL_BURN_JS;
  auto app = Subprocess::Start(
      {.argv = {"node", script, "--grpc", fmt::format("http://127.0.0.1:{}", grpc_port), "--http",
                fmt::format("http://127.0.0.1:{}/v1/traces", http_port), "--truth",
                truth_file.string(), "--duration-ms", std::to_string(kBurnMs)},
       .env = {{"NODE_PATH", std::string(app_dir) + "/node_modules"}},
       .pipe_stdin = true});
  ASSERT_TRUE(app.ok()) << app.error();
  auto ready = (*app)->WaitForLine([](std::string_view l) { return l.starts_with("ready "); }, 60s);
  ASSERT_TRUE(ready.ok()) << ready.error();
  const uint32_t pid = static_cast<uint32_t>(std::stoul(ready->substr(6)));
  ASSERT_EQ(pid, static_cast<uint32_t>((*app)->pid()));

  auto agent = Subprocess::Start(
      {.argv = {Bin("flamestream-agent"), "--log-level", "info", "--admin-listen",
                fmt::format("127.0.0.1:{}", agent_admin), "--frequency", "99", "--pid",
                std::to_string(pid), "--set", kafka, "--set",
                "agent.spool.dir=" + (dir / "spool").string(), "--set",
                "agent.batch.interval=500ms"},
       .capture_stderr = true});
  ASSERT_TRUE(agent.ok()) << agent.error();
  auto sampling = (*agent)->WaitForLine(
      [](std::string_view l) {
        return l.find("msg=sampling") != std::string_view::npos ||
               l.find("msg=\"sampling\"") != std::string_view::npos;
      },
      60s);
  ASSERT_TRUE(sampling.ok()) << sampling.error() << "\n"
                             << common::Join((*agent)->lines(), "\n");

  // Burn; keep the agent's log pipe drained meanwhile.
  ASSERT_TRUE((*app)->WriteStdin("go\n").ok());
  std::optional<std::string> done;
  const auto app_deadline = Clock::now() + std::chrono::milliseconds(kBurnMs) + 60s;
  while (!done && Clock::now() < app_deadline) {
    auto line = (*app)->ReadLine(200ms);
    if (line.ok() && line->starts_with("done ")) done = *line;
    if (line.ok() == false && line.error().code() == StatusCode::kNotFound) break;
    while ((*agent)->ReadLine(1ms).ok()) {
    }
  }
  ASSERT_TRUE(done.has_value()) << "the app did not finish";
  auto app_exit = (*app)->Wait(10s);
  ASSERT_TRUE(app_exit.ok() && app_exit->exited && app_exit->code == 0);

  // Stop in pipeline order, each once it has caught up with its input, so everything drains.
  ASSERT_TRUE((*agent)->Signal(SIGTERM).ok());
  while ((*agent)->ReadLine(30s).ok()) {
  }
  auto agent_exit = (*agent)->Wait(30s);
  ASSERT_TRUE(agent_exit.ok());
  EXPECT_TRUE(agent_exit->exited && agent_exit->code == 0)
      << common::Join((*agent)->lines(), "\n");
  EXPECT_TRUE(WaitCaughtUp(sym_admin, 60s)) << "symbolizer lag";
  ASSERT_NO_FATAL_FAILURE(Stop("symbolizer", **symbolizer));
  EXPECT_TRUE(WaitCaughtUp(corr_admin, 60s)) << "correlator lag";
  ASSERT_NO_FATAL_FAILURE(Stop("correlator", **correlator));

  const std::vector<TruthSpan> truth = ReadTruth(truth_file);
  ASSERT_GT(truth.size(), 30u);
  size_t via_grpc = 0;
  for (const TruthSpan& s : truth) via_grpc += s.via == "grpc" ? 1 : 0;
  EXPECT_GT(via_grpc, 0u);
  EXPECT_LT(via_grpc, truth.size());

  const std::vector<AppSample> samples = ReadCorrelated(bootstrap, pid);
  size_t inside = 0;
  size_t right = 0;
  size_t outside = 0;
  size_t outside_with_span = 0;
  size_t main_thread = 0;
  std::map<std::string, std::pair<size_t, size_t>> by_name;  // name -> (inside, right)
  std::map<std::string, size_t> wrong;                       // what the misses carried
  for (const AppSample& s : samples) {
    main_thread += s.tid == pid ? 1 : 0;
    const TruthSpan* want = Innermost(truth, s.t);
    if (want == nullptr) {
      ++outside;
      if (s.has_span) {
        ++outside_with_span;
        ADD_FAILURE() << "sample at " << s.t << " outside every span carries " << s.name;
      }
      continue;
    }
    ++inside;
    ++by_name[want->name].first;
    if (s.has_span && s.name == want->name && s.trace_id == want->trace_id &&
        s.span_id == want->span_id) {
      ++right;
      ++by_name[want->name].second;
    } else {
      ++wrong[s.has_span ? want->name + " got " + s.name : want->name + " got none"];
    }
  }
  const double ratio = inside == 0 ? 0 : static_cast<double>(right) / static_cast<double>(inside);
  const double secs = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("correlator e2e: %zu truth spans (%zu via gRPC), %zu app samples (%zu on the main "
              "thread): %zu inside spans, %zu right (%.4f); %zu outside, %zu of those with a "
              "span; wall time %.1f s\n",
              truth.size(), via_grpc, samples.size(), main_thread, inside, right, ratio, outside,
              outside_with_span, secs);
  for (const auto& [name, c] : by_name) {
    std::printf("  %-8s inside %zu right %zu\n", name.c_str(), c.first, c.second);
  }
  for (const auto& [what, n] : wrong) std::printf("  miss: %s x%zu\n", what.c_str(), n);
  EXPECT_GE(inside, 200u) << "too few samples inside spans for the ratio to mean something";
  EXPECT_GE(ratio, 0.90);
  EXPECT_EQ(outside_with_span, 0u);
  EXPECT_GT(outside, 0u) << "the app burns CPU outside spans too";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace flamestream
