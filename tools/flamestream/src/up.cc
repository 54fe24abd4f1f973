#include "up.h"

#include <algorithm>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "flamestream/common/strings.h"
#include "flamestream/common/units.h"
#include "interrupts.h"
#include "probe.h"

namespace flamestream::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string Listen(const std::string& host, int port) { return fmt::format("{}:{}", host, port); }

using common::FormatDuration;

bool IsExecutable(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && access(p.c_str(), X_OK) == 0;
}

struct PortFlag {
  std::string flag;
  std::string host;
  int port;
};

// One status line: "[12s] agent 990/s | symbolizer 985/s lag 0 | ...".
class StatusLine {
 public:
  explicit StatusLine(const std::vector<StageSpec>& stages) : stages_(stages) {}

  std::string Render(std::chrono::seconds elapsed, Supervisor& sup) {
    const std::vector<StageState> states = sup.Snapshot();
    std::vector<std::string> parts;
    const auto now = Clock::now();
    for (size_t i = 0; i < stages_.size(); ++i) {
      const StageSpec& s = stages_[i];
      if (s.metrics_port == 0) continue;
      std::string part = s.name;
      if (states[i].pid <= 0) {
        parts.push_back(part + " down");
        continue;
      }
      Result<MetricSums> m = ScrapeMetrics(s.metrics_port, 300ms);
      if (!m.ok()) {
        parts.push_back(part + " ?");
        continue;
      }
      sup.NoteMetrics(i, *m);
      if (std::optional<double> v = m->Get(s.rate_metric)) {
        auto& [prev_v, prev_t] = prev_[s.name];
        if (prev_t != Clock::time_point{} && now > prev_t) {
          const double secs = std::chrono::duration<double>(now - prev_t).count();
          part += fmt::format(" {:.0f}/s", std::max(0.0, (*v - prev_v) / secs));
        }
        prev_v = *v;
        prev_t = now;
      }
      if (std::optional<double> lag = m->Get("fs_consumer_lag")) {
        part += fmt::format(" lag {:.0f}", *lag);
      }
      if (states[i].skipped_records > 0) {
        part += fmt::format(" LOST {:.0f} records", states[i].skipped_records);
      }
      if (states[i].restarts > 0) part += fmt::format(" ({} restarts)", states[i].restarts);
      parts.push_back(std::move(part));
    }
    return fmt::format("[{}s] {}", elapsed.count(), fmt::join(parts, " | "));
  }

 private:
  const std::vector<StageSpec>& stages_;
  std::map<std::string, std::pair<double, Clock::time_point>> prev_;
};

}  // namespace

Result<std::string> FindStageBinary(const std::string& name, const std::string& bin_dir) {
  std::vector<fs::path> dirs;
  if (!bin_dir.empty()) dirs.emplace_back(bin_dir);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(self.parent_path());
  if (const char* env = std::getenv("FLAMESTREAM_BIN_DIR"); env != nullptr && *env != '\0') {
    dirs.emplace_back(env);
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    for (const std::string& d : common::SplitNonEmpty(path, ':')) dirs.emplace_back(d);
  }
  std::vector<std::string> searched;
  for (const fs::path& d : dirs) {
    const fs::path candidate = d / name;
    if (IsExecutable(candidate)) return fs::absolute(candidate).string();
    searched.push_back(d.string());
  }
  return NotFound("cannot find {} (searched --bin-dir, next to flamestream, $FLAMESTREAM_BIN_DIR "
                  "and PATH: {}); build it (cmake --build build) or set FLAMESTREAM_BIN_DIR",
                  name, fmt::join(searched, ":"));
}

Result<std::vector<std::string>> SymbolizerDebugDirs(const std::vector<std::string>& dirs) {
  if (dirs.empty()) return std::vector<std::string>{};
  std::vector<std::string> out;
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) {
      return InvalidArgument("--debug-dir {}: not a directory", d);
    }
    out.push_back(fs::absolute(d).lexically_normal().string());
  }
  if (std::find(out.begin(), out.end(), kStageKeys.default_debug_dir) == out.end()) {
    out.emplace_back(kStageKeys.default_debug_dir);
  }
  return out;
}

Result<std::vector<StageSpec>> BuildStages(const UpOptions& o) {
  const StageKeys& k = kStageKeys;
  const fs::path out = fs::absolute(o.out).lexically_normal();
  const fs::path logs = out / "logs";
  const auto log_of = [&](const std::string& stage) { return (logs / (stage + ".log")).string(); };
  const std::string bootstrap =
      o.brokers.empty() ? Listen("127.0.0.1", o.broker_port) : o.brokers;

  std::map<std::string, std::vector<std::string>> extra;  // stage -> --set args from the user
  for (const std::string& s : o.stage_sets) {
    const size_t colon = s.find(':');
    const size_t eq = s.find('=');
    if (colon == std::string::npos || eq == std::string::npos || eq < colon) {
      return InvalidArgument("--stage-set {}: expected STAGE:KEY=VALUE", s);
    }
    const std::string stage = s.substr(0, colon);
    static const std::set<std::string> kStages = {"agent", "symbolizer", "correlator", "exporter"};
    if (!kStages.contains(stage)) {
      return InvalidArgument("--stage-set {}: unknown stage '{}' (agent, symbolizer, correlator, "
                             "exporter)", s, stage);
    }
    extra[stage].push_back("--set");
    extra[stage].push_back(s.substr(colon + 1));
  }

  std::vector<StageSpec> stages;
  if (o.brokers.empty()) {
    FS_ASSIGN_OR_RETURN(std::string bin, FindStageBinary("flamestream-devbroker", o.bin_dir));
    stages.push_back({.name = "broker",
                      .binary = bin,
                      .args = {"--port", std::to_string(o.broker_port), "--partitions",
                               std::to_string(o.broker_partitions)},
                      .ready = {.kind = ReadyKind::kTcp, .port = o.broker_port},
                      .log_file = log_of("broker")});
  }
  std::string redis = o.redis;
  if (redis.empty()) {
    FS_ASSIGN_OR_RETURN(std::string bin, FindStageBinary("redis-server", o.bin_dir));
    int port = o.redis_port;
    if (port == 0) {
      FS_ASSIGN_OR_RETURN(port, PickFreePort());
    }
    redis = Listen("127.0.0.1", port);
    stages.push_back({.name = "redis",
                      .binary = bin,
                      .args = {"--port", std::to_string(port), "--bind", "127.0.0.1", "--save",
                               "", "--appendonly", "no"},
                      .ready = {.kind = ReadyKind::kTcp, .port = port},
                      .log_file = log_of("redis")});
  }

  const auto service = [&](const std::string& name, int admin_port, std::vector<std::string> sets,
                           bool wait_for_lag, const char* rate_metric) -> Result<StageSpec> {
    FS_ASSIGN_OR_RETURN(std::string bin, FindStageBinary("flamestream-" + name, o.bin_dir));
    StageSpec s{.name = name,
                .binary = bin,
                .args = {k.admin_listen_flag, Listen("127.0.0.1", admin_port)},
                .ready = {.kind = ReadyKind::kHttp, .port = admin_port},
                .metrics_port = admin_port,
                .rate_metric = rate_metric,
                .wait_for_lag_zero = wait_for_lag,
                .log_file = log_of(name)};
    for (std::string& kv : sets) {
      s.args.push_back("--set");
      s.args.push_back(std::move(kv));
    }
    for (const std::string& a : extra[name]) s.args.push_back(a);
    return s;
  };

  // Admin ports: base + fixed offsets (the services' own defaults are 9401.. in this order).
  const int agent_admin = o.admin_port_base;
  const int correlator_admin = o.admin_port_base + 1;
  const int exporter_admin = o.admin_port_base + 2;
  const int symbolizer_admin = o.admin_port_base + 3;

  std::vector<std::string> symbolizer_sets = {SetArg(k.kafka_bootstrap, bootstrap),
                                              SetArg(k.symbolizer_redis, redis)};
  FS_ASSIGN_OR_RETURN(std::vector<std::string> debug_dirs, SymbolizerDebugDirs(o.debug_dirs));
  if (!debug_dirs.empty()) {
    symbolizer_sets.push_back(SetArg(k.symbolizer_debug_dirs, common::Join(debug_dirs, ",")));
  }
  FS_ASSIGN_OR_RETURN(StageSpec symbolizer,
                      service("symbolizer", symbolizer_admin, std::move(symbolizer_sets),
                              /*wait_for_lag=*/true, k.stage_rate_metric));
  stages.push_back(std::move(symbolizer));

  FS_ASSIGN_OR_RETURN(
      StageSpec correlator,
      service("correlator", correlator_admin,
              {SetArg(k.kafka_bootstrap, bootstrap),
               SetArg(k.correlator_lateness, FormatDuration(o.lateness)),
               SetArg(k.correlator_otlp_grpc_listen, Listen(o.otlp_host, o.otlp_grpc_port)),
               SetArg(k.correlator_otlp_http_listen, Listen(o.otlp_host, o.otlp_http_port))},
              /*wait_for_lag=*/true, k.stage_rate_metric));
  stages.push_back(std::move(correlator));

  std::vector<std::string> sinks = {"file"};
  std::vector<std::string> exporter_sets = {SetArg(k.kafka_bootstrap, bootstrap),
                                            SetArg(k.exporter_file_out, out.string()),
                                            SetArg(k.exporter_window, FormatDuration(o.window))};
  if (!o.pyroscope.empty()) {
    sinks.emplace_back("pyroscope");
    exporter_sets.push_back(SetArg(k.exporter_pyroscope_url, o.pyroscope));
  }
  if (!o.otlp.empty()) {
    sinks.emplace_back("otlp");
    exporter_sets.push_back(SetArg(k.exporter_otlp_endpoint, o.otlp));
  }
  exporter_sets.insert(exporter_sets.begin() + 1, SetArg(k.exporter_sinks, common::Join(sinks, ",")));
  FS_ASSIGN_OR_RETURN(StageSpec exporter, service("exporter", exporter_admin, exporter_sets,
                                                  /*wait_for_lag=*/true, k.stage_rate_metric));
  stages.push_back(std::move(exporter));

  std::vector<std::string> agent_sets = {SetArg(k.kafka_bootstrap, bootstrap),
                                         SetArg(k.agent_frequency, std::to_string(o.frequency))};
  if (!o.pids.empty()) {
    std::vector<std::string> pids;
    for (int p : o.pids) pids.push_back(std::to_string(p));
    agent_sets.push_back(SetArg(k.agent_pids, common::Join(pids, ",")));
  }
  if (!o.comm.empty()) agent_sets.push_back(SetArg(k.agent_comm, o.comm));
  FS_ASSIGN_OR_RETURN(StageSpec agent, service("agent", agent_admin, agent_sets,
                                               /*wait_for_lag=*/false, k.agent_rate_metric));
  stages.push_back(std::move(agent));
  return stages;
}

namespace {

Status CheckPorts(const UpOptions& o) {
  std::vector<PortFlag> ports;
  if (o.brokers.empty()) ports.push_back({"--broker-port", "127.0.0.1", o.broker_port});
  if (o.redis.empty() && o.redis_port != 0) {
    ports.push_back({"--redis-port", "127.0.0.1", o.redis_port});
  }
  ports.push_back({"--otlp-grpc-port", o.otlp_host, o.otlp_grpc_port});
  ports.push_back({"--otlp-http-port", o.otlp_host, o.otlp_http_port});
  for (int i = 0; i < 4; ++i) {
    ports.push_back({fmt::format("--admin-port-base (+{})", i), "127.0.0.1", o.admin_port_base + i});
  }
  std::map<int, std::string> seen;
  for (const PortFlag& p : ports) {
    auto [it, inserted] = seen.emplace(p.port, p.flag);
    if (!inserted) {
      return InvalidArgument("{} and {} both use port {}; give them different ports", it->second,
                             p.flag, p.port);
    }
    FS_RETURN_IF_ERROR(CheckPortFree(p.host, p.port, p.flag));
  }
  return OkStatus();
}

void PrintEvent(const Event& e, bool status_line, std::ostream& err) {
  if (status_line) err << "\r\x1b[K";
  err << "flamestream up: " << e.stage << " " << EventKindName(e.kind);
  if (!e.detail.empty()) err << " (" << e.detail << ")";
  err << "\n" << std::flush;
}

}  // namespace

int RunUp(const UpOptions& o, const std::vector<std::string>& argv, std::ostream& err) {
  if (!o.skip_root_check && geteuid() != 0) {
    err << "flamestream up: the agent loads eBPF programs and needs root; rerun with sudo:\n  sudo "
        << common::Join(argv, " ") << "\n";
    return 2;
  }
  if (o.frequency < 1 || o.frequency > 10000) {
    err << "flamestream up: --frequency " << o.frequency << ": expected 1..10000\n";
    return 2;
  }
  Result<std::vector<StageSpec>> stages = BuildStages(o);
  if (!stages.ok()) {
    err << "flamestream up: " << stages.error().message() << "\n";
    return 2;
  }
  if (Status s = CheckPorts(o); !s.ok()) {
    err << "flamestream up: " << s.message() << "\n";
    return 2;
  }
  const fs::path out = fs::absolute(o.out).lexically_normal();
  std::error_code ec;
  fs::create_directories(out / "logs", ec);
  if (ec) {
    err << "flamestream up: --out " << o.out << ": cannot create " << (out / "logs").string()
        << ": " << ec.message() << "\n";
    return 2;
  }

  const bool status_line = o.status_line.value_or(isatty(STDERR_FILENO) == 1);
  Interrupts interrupts;

  SupervisorOptions sup_opts{
      .ready_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(o.ready_timeout),
      .lag_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(o.drain_timeout),
      .drain_order = {"agent", "symbolizer", "correlator", "exporter"},
      .on_event = [&](const Event& e) { PrintEvent(e, status_line, err); },
      .abort = [&interrupts] { return interrupts.count() >= 2; },
  };
  Supervisor sup(*stages, sup_opts);

  const std::string broker =
      o.brokers.empty()
          ? fmt::format("dev broker 127.0.0.1:{} (in memory: {} partitions a topic, each keeping "
                        "its newest 5 MiB; a stage that falls further behind loses records, "
                        "reported as LOST)",
                        o.broker_port, o.broker_partitions)
          : o.brokers;
  std::string redis = o.redis;
  for (const StageSpec& s : *stages) {
    if (s.name == "redis") redis = fmt::format("private redis 127.0.0.1:{}", s.ready.port);
  }
  err << fmt::format(
      "flamestream up: Kafka {}, {}, OTLP gRPC {}:{} HTTP {}:{}, output {}, logs {}/logs\n",
      broker, redis, o.otlp_host, o.otlp_grpc_port, o.otlp_host, o.otlp_http_port, out.string(),
      out.string());

  int code = 0;
  if (Status s = sup.Start(); !s.ok()) {
    err << "flamestream up: " << s.message() << "\n";
    code = 1;
  } else {
    err << (o.duration.count() > 0
                ? fmt::format("flamestream up: running for {}; Ctrl-C stops earlier\n",
                              FormatDuration(o.duration))
                : std::string("flamestream up: running; Ctrl-C stops\n"));
    StatusLine line(sup.stages());
    const auto start = Clock::now();
    auto next_status = start + 1s;
    while (interrupts.count() == 0 && (o.duration.count() == 0 || Clock::now() - start < o.duration)) {
      sup.Poll();
      if (Clock::now() >= next_status) {
        const auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start);
        const std::string text = line.Render(elapsed, sup);
        if (status_line) {
          err << "\r\x1b[K" << text << std::flush;
          next_status += 1s;
        } else {
          err << "flamestream up: " << text << "\n";
          next_status += 10s;
        }
      }
      std::this_thread::sleep_for(100ms);
    }
    if (status_line) err << "\r\x1b[K";
    err << "flamestream up: draining (agent, symbolizer, correlator, exporter); Ctrl-C again "
           "aborts\n";
    if (Status s = sup.Drain(); !s.ok()) {
      err << "flamestream up: " << s.message() << "\n";
      code = interrupts.count() >= 2 ? 130 : 1;
    }
  }
  sup.Kill();  // nothing should be left; make sure

  // Records the broker deleted before a stage read them (retention; on the dev broker its
  // in-memory cap per partition): their samples never reached the sinks.
  for (const StageState& st : sup.Snapshot()) {
    if (st.skipped_records > 0) {
      err << fmt::format(
          "flamestream up: LOST DATA: {} never read {:.0f} input records: the broker deleted "
          "them first (retention{}); see fs_records_skipped_total in its log\n",
          st.name, st.skipped_records,
          o.brokers.empty() ? "; the dev broker keeps 5 MiB per partition in memory" : "");
      if (code == 0) code = 1;
    }
  }

  // Where the results are.
  size_t profiles = 0;
  for (auto it = fs::recursive_directory_iterator(out, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file() && it->path().string().ends_with(".pb.gz")) ++profiles;
  }
  // The file sink writes one page per service: <out>/<service>.html.
  std::vector<std::string> pages;
  for (auto it = fs::directory_iterator(out, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == kStageKeys.flame_graph_extension) {
      pages.push_back(it->path().string());
    }
  }
  std::sort(pages.begin(), pages.end());
  if (pages.empty()) {
    err << "flamestream up: no flame graph page was written in " << out.string() << "\n";
  }
  for (const std::string& page : pages) {
    err << "flamestream up: flame graph: file://" << fs::absolute(page).string() << "\n";
  }
  err << fmt::format("flamestream up: {} pprof files in {}; try: flamestream top {}\n", profiles,
                     out.string(), out.string());
  return code;
}

}  // namespace flamestream::cli
