// The supervisor behind `flamestream up`, with stand-in stages: restart with backoff, drain
// order with lag waits, start failures, real service shells, nothing left behind.
#include "supervisor.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <thread>

#include "cli_test_util.h"
#include "flamestream/common/fd.h"
#include "flamestream/obs/admin_server.h"
#include "flamestream/obs/metrics.h"
#include "flamestream/testing/dev_broker.h"
#include "probe.h"

namespace flamestream::cli {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using cli_test::TempDir;

// Collects events (the supervisor calls on_event from the calling thread only).
struct Recorder {
  std::vector<Event> events;
  std::function<void(const Event&)> Callback() {
    return [this](const Event& e) { events.push_back(e); };
  }
  [[nodiscard]] std::vector<std::string> Names(const std::string& stage = "") const {
    std::vector<std::string> out;
    for (const Event& e : events) {
      if (!stage.empty() && e.stage != stage) continue;
      out.push_back(fmt::format("{} {}{}", e.stage, EventKindName(e.kind),
                                e.detail.empty() || e.kind == Event::Kind::kStarted
                                    ? ""
                                    : " (" + e.detail + ")"));
    }
    return out;
  }
  [[nodiscard]] const Event* Find(const std::string& stage, Event::Kind kind, int nth = 0) const {
    for (const Event& e : events) {
      if (e.stage == stage && e.kind == kind && nth-- == 0) return &e;
    }
    return nullptr;
  }
};

StageSpec Shell(const std::string& name, const std::string& script) {
  return {.name = name, .binary = "/bin/sh", .args = {"-c", script}};
}

// A stage that appends "stop <name>" to `file` on SIGTERM and exits 0.
StageSpec Trapping(const std::string& name, const std::string& file) {
  return Shell(name, fmt::format("trap 'echo stop {} >> {}; exit 0' TERM; "
                                 "while :; do sleep 0.05; done",
                                 name, file));
}

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

void PollFor(Supervisor& sup, std::chrono::milliseconds d, const std::function<bool()>& done) {
  const auto deadline = Clock::now() + d;
  while (Clock::now() < deadline && !done()) {
    sup.Poll();
    std::this_thread::sleep_for(20ms);
  }
}

TEST(Supervisor, RestartsCrashedStageAfterBackoff) {
  TempDir dir;
  Recorder rec;
  const std::string marker = dir / "crashed";
  Supervisor sup({Shell("once", fmt::format("sleep 0.2; if [ -e {0} ]; then exec sleep 60; fi; "
                                            "touch {0}; exit 3",
                                            marker))},
                 {.backoff_initial = 300ms, .on_event = rec.Callback()});
  ASSERT_TRUE(sup.Start().ok());
  PollFor(sup, 5s, [&] { return sup.Snapshot()[0].restarts == 1 && sup.Snapshot()[0].pid > 0; });
  EXPECT_EQ(rec.Names(), (std::vector<std::string>{"once started", "once ready",
                                                   "once exited (exit 3)",
                                                   "once restarting (in 300ms)", "once started"}));
  const Event* exited = rec.Find("once", Event::Kind::kExited);
  const Event* restarted = rec.Find("once", Event::Kind::kStarted, 1);
  ASSERT_NE(exited, nullptr);
  ASSERT_NE(restarted, nullptr);
  EXPECT_GE(restarted->at - exited->at, 300ms);
  const StageState st = sup.Snapshot()[0];
  EXPECT_EQ(st.restarts, 1);
  EXPECT_EQ(st.last_exit, "exit 3");
  EXPECT_TRUE(sup.Drain().ok());
}

TEST(Supervisor, BackoffDoublesUpToTheMaximum) {
  Recorder rec;
  Supervisor sup({Shell("flappy", "sleep 0.05; exit 4")},
                 {.backoff_initial = 100ms, .backoff_max = 400ms, .on_event = rec.Callback()});
  ASSERT_TRUE(sup.Start().ok());
  PollFor(sup, 5s, [&] { return rec.Find("flappy", Event::Kind::kRestarting, 4) != nullptr; });
  std::vector<std::string> delays;
  for (const Event& e : rec.events) {
    if (e.kind == Event::Kind::kRestarting) delays.push_back(e.detail);
  }
  ASSERT_GE(delays.size(), 5u);
  delays.resize(5);
  EXPECT_EQ(delays, (std::vector<std::string>{"in 100ms", "in 200ms", "in 400ms", "in 400ms",
                                              "in 400ms"}));
  (void)sup.Drain();
}

TEST(Supervisor, RunToCompletionStageEndsOnExitZeroAndFailsAfterItsRestarts) {
  struct Case {
    std::string script;
    bool done;
    int restarts;
    std::string last_exit;
  };
  const std::vector<Case> cases = {
      {"sleep 0.1; exit 0", true, 0, "exit 0"},
      {"exit 0", true, 0, "exit 0"},  // exits before any ready check could run
      {"sleep 0.1; exit 2", false, 0, "exit 2"},  // bad configuration: no retry
      {"sleep 0.1; exit 5", false, 2, "exit 5"},  // a crash: max_restarts retries
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.script);
    Recorder rec;
    StageSpec spec = Shell("replay", c.script);
    spec.run_to_completion = true;
    spec.max_restarts = 2;
    Supervisor sup({spec}, {.backoff_initial = 50ms, .on_event = rec.Callback()});
    ASSERT_TRUE(sup.Start().ok());
    PollFor(sup, 10s, [&] { return sup.Snapshot()[0].done || sup.Snapshot()[0].failed; });
    const StageState st = sup.Snapshot()[0];
    EXPECT_EQ(st.done, c.done);
    EXPECT_EQ(st.failed, !c.done);
    EXPECT_EQ(st.restarts, c.restarts);
    EXPECT_EQ(st.last_exit, c.last_exit);
    EXPECT_EQ(st.pid, -1);
    // Nothing restarts it afterwards.
    PollFor(sup, 300ms, [] { return false; });
    EXPECT_EQ(sup.Snapshot()[0].restarts, c.restarts);
    EXPECT_TRUE(sup.Drain().ok());
  }
}

TEST(Supervisor, DrainsInPipelineOrderAfterLagReachesZero) {
  TempDir dir;
  const std::string stops = dir / "stops";
  // The consumer's /metrics: lag 5 until the test sets it to 0.
  obs::Registry registry;
  obs::Gauge& lag = registry.Gauge("fs_consumer_lag", "lag", {{"partition", "0"}});
  lag.Set(5);
  registry.Counter("fs_records_in_total", "in").Inc(7);
  Result<std::unique_ptr<obs::AdminServer>> admin = obs::AdminServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(admin.ok()) << admin.error();

  StageSpec consumer = Trapping("consumer", stops);
  consumer.metrics_port = (*admin)->port();
  consumer.wait_for_lag_zero = true;
  Recorder rec;
  // Start order infra, consumer, producer; drain order producer, consumer, then infra.
  Supervisor sup({Trapping("infra", stops), consumer, Trapping("producer", stops)},
                 {.drain_order = {"producer", "consumer"}, .on_event = rec.Callback()});
  ASSERT_TRUE(sup.Start().ok());
  std::this_thread::sleep_for(200ms);  // let the shells install their traps

  Clock::time_point lag_cleared;
  std::thread clear([&] {
    std::this_thread::sleep_for(1500ms);
    lag_cleared = Clock::now();
    lag.Set(0);
  });
  Status drained = sup.Drain();
  clear.join();
  EXPECT_TRUE(drained.ok()) << drained;
  EXPECT_EQ(Lines(stops),
            (std::vector<std::string>{"stop producer", "stop consumer", "stop infra"}));
  const Event* wait = rec.Find("consumer", Event::Kind::kLagWait);
  const Event* stopping = rec.Find("consumer", Event::Kind::kStopping);
  ASSERT_NE(wait, nullptr);
  ASSERT_NE(stopping, nullptr);
  EXPECT_GT(stopping->at, lag_cleared) << "consumer stopped before its lag reached 0";
  EXPECT_EQ(rec.Names("consumer").back(), "consumer stopped (exit 0)");
}

TEST(Supervisor, DrainsTheRealServiceShells) {
  // The real stages need a Kafka cluster to start: give them the dev broker.
  auto broker = testing::DevBroker::Start();
  ASSERT_TRUE(broker.ok()) << broker.error();
  const std::string kafka = "kafka.bootstrap.servers=" + (*broker)->bootstrap();
  Result<std::string> correlator = testing::BinPath("flamestream-correlator");
  Result<std::string> exporter = testing::BinPath("flamestream-exporter");
  ASSERT_TRUE(correlator.ok() && exporter.ok());
  std::vector<StageSpec> stages;
  for (const auto& [name, bin] : {std::pair{"correlator", *correlator}, {"exporter", *exporter}}) {
    Result<int> port = PickFreePort();
    ASSERT_TRUE(port.ok());
    stages.push_back({.name = name,
                      .binary = bin,
                      .args = {"--admin-listen", fmt::format("127.0.0.1:{}", *port), "--set",
                               kafka},
                      .ready = {.kind = ReadyKind::kHttp, .port = *port},
                      .metrics_port = *port,
                      .wait_for_lag_zero = true});
  }
  Recorder rec;
  Supervisor sup(stages, {.ready_timeout = 30s,
                          .drain_order = {"correlator", "exporter"},
                          .on_event = rec.Callback()});
  ASSERT_TRUE(sup.Start().ok());
  EXPECT_NE(rec.Find("correlator", Event::Kind::kReady), nullptr);
  EXPECT_NE(rec.Find("exporter", Event::Kind::kReady), nullptr);
  Status s = sup.Drain();
  EXPECT_TRUE(s.ok()) << s;
  const Event* a = rec.Find("correlator", Event::Kind::kStopped);
  const Event* b = rec.Find("exporter", Event::Kind::kStopped);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->detail, "exit 0");
  EXPECT_EQ(b->detail, "exit 0");
  EXPECT_LT(a->at, b->at);
  // Their admin ports are free again.
  for (const StageSpec& st : stages) {
    EXPECT_TRUE(CheckPortFree("127.0.0.1", st.metrics_port, "--x").ok());
  }
}

TEST(Supervisor, StartFailureNamesTheStageAndShowsItsLog) {
  TempDir dir;
  Result<int> unused = PickFreePort();
  ASSERT_TRUE(unused.ok());
  struct Case {
    std::string name;
    StageSpec stage;
    std::vector<std::string> needles;
  };
  StageSpec dies = Shell("bad", "echo 'config: unknown key x.y' >&2; exit 2");
  dies.ready = {.kind = ReadyKind::kTcp, .port = *unused};
  dies.log_file = dir / "bad.log";
  StageSpec missing{.name = "ghost", .binary = dir / "no-such-binary"};
  const std::vector<Case> cases = {
      {"exits before ready", dies,
       {"stage bad (/bin/sh) exit 2 before it was ready", "its log " + dir / "bad.log",
        "config: unknown key x.y"}},
      {"cannot exec", missing, {"stage ghost: cannot execute", "No such file or directory"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir stops_dir;
    // A healthy stage before the failing one must be stopped again.
    Supervisor sup({Trapping("first", stops_dir / "stops"), c.stage}, {});
    std::this_thread::sleep_for(50ms);
    Status s = sup.Start();
    ASSERT_FALSE(s.ok());
    for (const std::string& n : c.needles) {
      EXPECT_NE(s.message().find(n), std::string::npos) << s.message();
    }
    EXPECT_EQ(sup.Snapshot()[0].pid, -1) << "the stage started first is still running";
  }
}

TEST(Supervisor, LeavesNoProcessBehindWhenDestroyed) {
  std::vector<pid_t> pids;
  {
    Supervisor sup({Shell("a", "exec sleep 60"), Shell("b", "exec sleep 60")}, {});
    ASSERT_TRUE(sup.Start().ok());
    for (const StageState& s : sup.Snapshot()) pids.push_back(s.pid);
  }
  for (pid_t p : pids) {
    EXPECT_EQ(kill(p, 0), -1) << "pid " << p << " still exists";
  }
}

TEST(Probe, PortInUseNamesTheFlag) {
  common::UniqueFd fd(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd.get(), 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);

  Status busy = CheckPortFree("127.0.0.1", port, "--otlp-grpc-port");
  EXPECT_EQ(busy.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(busy.message().find(fmt::format("port {} (--otlp-grpc-port) is already in use", port)),
            std::string::npos)
      << busy;
  fd.reset();
  EXPECT_TRUE(CheckPortFree("127.0.0.1", port, "--otlp-grpc-port").ok());
}

TEST(Probe, SumsMetricFamiliesOverLabels) {
  const MetricSums m = ParseMetricsText(
      "# HELP fs_consumer_lag lag\n"
      "# TYPE fs_consumer_lag gauge\n"
      "fs_consumer_lag{topic=\"a\",partition=\"0\"} 3\n"
      "fs_consumer_lag{topic=\"a}b\",partition=\"1\"} 4.5\n"
      "fs_records_in_total 12\n"
      "fs_processing_seconds_bucket{le=\"+Inf\"} 2\n");
  EXPECT_EQ(m.Get("fs_consumer_lag"), 7.5);
  EXPECT_EQ(m.Get("fs_records_in_total"), 12);
  EXPECT_EQ(m.Get("fs_processing_seconds_bucket"), 2);
  EXPECT_EQ(m.Get("fs_missing"), std::nullopt);
}

TEST(Probe, SeriesSumsTheLabelSetsThatMatch) {
  const MetricSums m = ParseMetricsText(
      "fs_frames_total{outcome=\"resolved\",stage=\"a\"} 5\n"
      "fs_frames_total{outcome=\"resolved\",stage=\"b\"} 2\n"
      "fs_frames_total{outcome=\"unresolved\"} 7\n"
      "fs_frames_total_other{outcome=\"resolved\"} 100\n"
      "fs_plain 3\n");
  EXPECT_EQ(m.Series("fs_frames_total", "outcome=\"resolved\""), 7);
  EXPECT_EQ(m.Series("fs_frames_total", "outcome=\"unresolved\""), 7);
  EXPECT_EQ(m.Series("fs_frames_total", ""), 14);
  EXPECT_EQ(m.Series("fs_plain", ""), 3);
  EXPECT_EQ(m.Series("fs_missing", ""), 0);
}

}  // namespace
}  // namespace flamestream::cli
