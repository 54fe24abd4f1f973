// flamestream: the command-line front end. `up` runs the whole pipeline on this machine;
// `replay` re-runs a time range through it (re-symbolization);
// `folded`, `top` and `diff` read pprof files; `topics` prepares a Kafka cluster.
//
//   sudo flamestream up --duration 30s
//   flamestream replay --from -1h --build-id 4f1e... --debug-dir ./debug
//   flamestream top --span "GET /cart" ./flamestream-out
//   flamestream diff --html diff.html before.pb.gz after.pb.gz
//   flamestream topics create --brokers kafka:9092 --partitions 8
#include <CLI/CLI.hpp>

#include <iostream>

#include "analyze_cmd.h"
#include "flamestream/common/units.h"
#include "replay_cmd.h"
#include "topics_cmd.h"
#include "up.h"

namespace {

namespace cli = flamestream::cli;

// A duration flag stored as text and parsed after CLI11, so its error names the flag.
struct DurationFlag {
  std::string flag;
  std::string text;
  std::chrono::nanoseconds* target;
};

bool ParseDurations(const std::vector<DurationFlag>& flags) {
  for (const DurationFlag& f : flags) {
    flamestream::Result<std::chrono::nanoseconds> d = flamestream::common::ParseDuration(f.text);
    if (!d.ok()) {
      std::cerr << "flamestream: " << f.flag << " " << f.text << ": " << d.error().message()
                << " (e.g. 30s, 1m30s, 7d)\n";
      return false;
    }
    *f.target = *d;
  }
  return true;
}

void AddAnalyzeFlags(CLI::App* cmd, cli::AnalyzeOptions& o, bool filters) {
  cmd->add_option("--tenant", o.tenant, "X-Scope-OrgID sent with Pyroscope URL inputs");
  cmd->add_option("--sample-type", o.sample_type,
                  "sample type to read (cpu, samples, ...); default: the profile's default");
  if (filters) {
    cmd->add_option("--service", o.service,
                    "only this service: DIR/<service>/ and samples labelled service_name=S");
    cmd->add_option("--span", o.span, "only samples whose span_name label is NAME");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flamestream: continuous profiling from eBPF samples to flame graphs"};
  app.require_subcommand(1);
  app.fallthrough(false);

  // folded
  cli::AnalyzeOptions folded;
  CLI::App* folded_cmd = app.add_subcommand(
      "folded", "print pprof files as folded stacks (root;...;leaf value), inlined frames "
                "as frames of their own; gzip or plain pprof");
  folded_cmd->add_option("FILE", folded.inputs, "pprof files, sink directories or Pyroscope URLs")->required();
  AddAnalyzeFlags(folded_cmd, folded, /*filters=*/true);

  // top
  cli::AnalyzeOptions top;
  CLI::App* top_cmd = app.add_subcommand(
      "top", "top functions like `pprof -top` (flat, flat%, sum%, cum, cum%, name)");
  top_cmd->add_option("FILES|DIR|URL", top.inputs,
                      "pprof files, the file sink's output directory (<out>/<service>/*.pb.gz), "
                      "or a Pyroscope URL as its UI shows it: "
                      "'http://host:4040/?query=<type>{service_name=\"S\"}&from=now-1h&until=now'")
      ->required();
  AddAnalyzeFlags(top_cmd, top, /*filters=*/true);
  top_cmd->add_option("--by", top.by, "sort by self (flat) or total (cum) time")->capture_default_str()
      ->check(CLI::IsMember({"self", "total"}));
  top_cmd->add_option("-n,--nodes", top.limit, "rows to show (0 = all)")->capture_default_str();

  // diff
  cli::DiffOptions diff;
  std::string before_path;
  std::string after_path;
  CLI::App* diff_cmd = app.add_subcommand(
      "diff", "functions whose share of the total changed most between two profiles (files "
              "or sink directories), and a differential flame graph page (--html)");
  diff_cmd->add_option("BEFORE", before_path, "baseline: pprof file, directory or Pyroscope URL")->required();
  diff_cmd->add_option("AFTER", after_path, "to compare: pprof file, directory or Pyroscope URL")->required();
  AddAnalyzeFlags(diff_cmd, diff.after, /*filters=*/true);
  diff_cmd->add_option("--by", diff.after.by, "compare self (flat) or total (cum) shares")->capture_default_str()
      ->check(CLI::IsMember({"self", "total"}));
  diff_cmd->add_option("-n,--nodes", diff.after.limit, "rows to show (0 = all)")->capture_default_str();
  diff_cmd->add_option("--html", diff.html, "write a self-contained differential flame graph page");

  // up
  cli::UpOptions up;
  std::string up_duration = "60s";
  std::string up_lateness = "2s";
  std::string up_window = "10s";
  std::string up_ready_timeout = "30s";
  std::string up_drain_timeout = "120s";
  bool no_status_line = false;
  CLI::App* up_cmd = app.add_subcommand(
      "up", "run the whole pipeline on this machine (dev broker, redis, symbolizer, correlator, "
            "exporter, agent) and leave pprof files and a flame graph in --out");
  up_cmd->add_option("--duration", up_duration, "how long to profile (0 = until Ctrl-C)")->capture_default_str();
  up_cmd->add_option("--out", up.out, "output directory (pprof files, flame graph, logs/)")->capture_default_str();
  up_cmd->add_option("--frequency", up.frequency, "samples per second per CPU")->capture_default_str()
      ->check(CLI::Range(1, 10000));
  up_cmd->add_option("--pid", up.pids, "profile only this pid (repeatable)");
  up_cmd->add_option("--comm", up.comm, "profile only processes whose comm/exe matches RE");
  up_cmd->add_option("--brokers", up.brokers, "use this Kafka cluster instead of the dev broker");
  up_cmd->add_option("--redis", up.redis, "use this redis (host:port) instead of a private one");
  up_cmd->add_option("--pyroscope", up.pyroscope, "also push profiles to this Pyroscope URL");
  up_cmd->add_option("--otlp", up.otlp, "also send OTLP profiles to this endpoint");
  up_cmd->add_option("--otlp-host", up.otlp_host, "address the OTLP span receivers bind")->capture_default_str();
  up_cmd->add_option("--otlp-grpc-port", up.otlp_grpc_port, "OTLP/gRPC span receiver port")->capture_default_str();
  up_cmd->add_option("--otlp-http-port", up.otlp_http_port, "OTLP/HTTP span receiver port")->capture_default_str();
  up_cmd->add_option("--broker-port", up.broker_port, "dev broker bootstrap port")->capture_default_str();
  up_cmd->add_option("--broker-partitions", up.broker_partitions,
                     "dev broker partitions per topic (each keeps its newest 5 MiB in memory)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  up_cmd->add_option("--redis-port", up.redis_port, "private redis port (0 = any free)")->capture_default_str();
  up_cmd->add_option("--admin-port-base", up.admin_port_base,
                     "admin (/metrics) ports: agent +0, correlator +1, exporter +2, symbolizer +3")
                     ->capture_default_str();
  up_cmd->add_option("--lateness", up_lateness,
                     "how long the correlator holds a sample for its span")->capture_default_str();
  up_cmd->add_option("--window", up_window, "exporter aggregation window")->capture_default_str();
  up_cmd->add_option("--ready-timeout", up_ready_timeout, "wait this long for each stage")->capture_default_str();
  up_cmd->add_option("--drain-timeout", up_drain_timeout,
                     "wait this long for a stage's consumer lag to reach 0 when stopping")->capture_default_str();
  up_cmd->add_option("--stage-set", up.stage_sets,
                     "extra stage setting STAGE:KEY=VALUE (repeatable), e.g. "
                     "agent:agent.kernel_stacks=false");
  up_cmd->add_option("--bin-dir", up.bin_dir,
                     "look for stage binaries here first (then next to flamestream, "
                     "$FLAMESTREAM_BIN_DIR, PATH)");
  up_cmd->add_option("--debug-dir", up.debug_dirs,
                     "extra symbolizer debug directory (build-id layout .build-id/xx/rest.debug, "
                     ".gnu_debuglink), searched before /usr/lib/debug (repeatable)");
  up_cmd->add_flag("--no-status-line", no_status_line, "no live status line on a terminal");
  up_cmd->add_flag("--skip-root-check", up.skip_root_check,
                   "start even when not root (the agent will fail unless it has CAP_BPF)");

  // replay
  cli::ReplayOptions replay;
  std::string replay_window = "10s";
  std::string replay_timeout = "30m";
  CLI::App* replay_cmd = app.add_subcommand(
      "replay", "re-symbolize, re-correlate and re-export a time range from the raw samples in "
                "Kafka (e.g. after adding debug files): over the old files for the file sink, or "
                "as a backfill to a Pyroscope/OTLP backend that lacks the data");
  replay_cmd->add_option("--from", replay.from,
                         "start: now, -1h, RFC 3339 UTC (2026-11-23T13:00:00Z) or Unix time")
      ->required();
  replay_cmd->add_option("--to", replay.to, "end (same forms as --from)")->capture_default_str();
  replay_cmd->add_option("--build-id", replay.build_ids,
                         "build id (hex) whose cached symbols are dropped first (repeatable)");
  replay_cmd->add_option("--brokers", replay.brokers,
                         "Kafka bootstrap servers (default: the dev broker of a running "
                         "`flamestream up`)")->capture_default_str();
  replay_cmd->add_option("--redis", replay.redis,
                         "the symbolizers' shared Redis cache (host:port); default none");
  replay_cmd->add_option("--sink", replay.sinks,
                         "file, pyroscope or otlp (repeatable; default file, plus pyroscope/otlp "
                         "when --pyroscope/--otlp is given)");
  replay_cmd->add_option("--out", replay.out, "the file sink's directory (and logs/)")
      ->capture_default_str();
  replay_cmd->add_option("--pyroscope", replay.pyroscope, "Pyroscope URL to backfill");
  replay_cmd->add_option("--otlp", replay.otlp, "OTLP profiles endpoint to backfill");
  replay_cmd->add_option("--debug-dir", replay.debug_dirs,
                         "extra symbolizer debug directory (build-id layout .build-id/xx/rest.debug, "
                         ".gnu_debuglink), searched before /usr/lib/debug (repeatable)");
  replay_cmd->add_option("--set", replay.sets,
                         "stage setting key=value (repeatable): symbolizer.*, correlator.*, "
                         "exporter.* go to that stage, kafka.* and log.* to all");
  replay_cmd->add_option("--window", replay_window,
                         "exporter window; must match the run being replaced")->capture_default_str();
  replay_cmd->add_option("--stage-timeout", replay_timeout,
                         "give up on a stage that has not caught up after this long")
      ->capture_default_str();
  replay_cmd->add_option("--epoch", replay.epoch,
                         "symbol epoch to write (default: now in Unix ms; must exceed the "
                         "epoch of the files it replaces)");
  replay_cmd->add_option("--bin-dir", replay.bin_dir,
                         "look for stage binaries here first (then next to flamestream, "
                         "$FLAMESTREAM_BIN_DIR, PATH)");

  // topics
  cli::TopicsOptions topics;
  std::string retention = "7d";
  std::string topics_timeout = "15s";
  std::vector<std::string> kafka_props;
  CLI::App* topics_cmd = app.add_subcommand("topics", "create or check the Flamestream topics");
  topics_cmd->require_subcommand(1);
  CLI::App* create_cmd = topics_cmd->add_subcommand(
      "create", "create every Flamestream topic (existing ones are left alone)");
  CLI::App* check_cmd = topics_cmd->add_subcommand(
      "check", "check that every topic exists, samples and keyed spans are co-partitioned and "
               "the processes topic is compacted (exit 1 otherwise)");
  for (CLI::App* c : {create_cmd, check_cmd}) {
    c->add_option("--brokers", topics.brokers, "bootstrap servers")->required();
    c->add_option("-X", kafka_props, "librdkafka property KEY=VALUE (repeatable)");
    c->add_option("--timeout", topics_timeout, "how long to wait for the cluster")
        ->capture_default_str();
  }
  create_cmd->add_option("--partitions", topics.partitions, "partitions per topic")->capture_default_str()
      ->check(CLI::Range(1, 100000));
  create_cmd->add_option("--replication", topics.replication, "replication factor")->capture_default_str()
      ->check(CLI::Range(1, 100));
  for (CLI::App* c : {create_cmd, check_cmd}) {
    c->add_option("--retention", retention, "retention of every topic but processes (compacted)")
                  ->capture_default_str();
  }

  // CLI11 reports an unknown command as "A subcommand is required"; name it instead.
  const auto known = [&app](const std::string& name) {
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      if (sub->check_name(name)) return true;
    }
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !known(argv[1])) {
    std::cerr << "flamestream: unknown command '" << argv[1]
              << "' (commands: folded, top, diff, up, replay, topics; see --help)\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (folded_cmd->parsed()) return cli::RunFolded(folded, std::cout, std::cerr);
  if (top_cmd->parsed()) return cli::RunTop(top, std::cout, std::cerr);
  if (diff_cmd->parsed()) {
    diff.before = diff.after;
    diff.before.inputs = {before_path};
    diff.after.inputs = {after_path};
    return cli::RunDiff(diff, std::cout, std::cerr);
  }
  if (up_cmd->parsed()) {
    if (!ParseDurations({{"--duration", up_duration, &up.duration},
                         {"--lateness", up_lateness, &up.lateness},
                         {"--window", up_window, &up.window},
                         {"--ready-timeout", up_ready_timeout, &up.ready_timeout},
                         {"--drain-timeout", up_drain_timeout, &up.drain_timeout}})) {
      return 2;
    }
    if (no_status_line) up.status_line = false;
    return cli::RunUp(up, std::vector<std::string>(argv, argv + argc), std::cerr);
  }
  if (replay_cmd->parsed()) {
    if (!ParseDurations({{"--window", replay_window, &replay.window},
                         {"--stage-timeout", replay_timeout, &replay.stage_timeout}})) {
      return 2;
    }
    return cli::RunReplay(replay, std::cout, std::cerr);
  }
  if (topics_cmd->parsed()) {
    std::chrono::nanoseconds timeout{};
    if (!ParseDurations({{"--retention", retention, &topics.retention},
                         {"--timeout", topics_timeout, &timeout}})) {
      return 2;
    }
    topics.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    for (const std::string& kv : kafka_props) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "flamestream topics: -X " << kv << ": expected KEY=VALUE\n";
        return 2;
      }
      topics.properties[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    if (create_cmd->parsed()) {
      flamestream::Result<std::string> r = cli::CreateTopics(topics);
      if (!r.ok()) {
        std::cerr << "flamestream topics create: " << r.error().message() << "\n";
        return r.error().code() == flamestream::StatusCode::kInvalidArgument ? 2 : 1;
      }
      std::cout << *r;
      return 0;
    }
    flamestream::Result<cli::TopicsCheck> r = cli::CheckTopics(topics);
    if (!r.ok()) {
      std::cerr << "flamestream topics check: " << r.error().message() << "\n";
      return r.error().code() == flamestream::StatusCode::kInvalidArgument ? 2 : 1;
    }
    std::cout << r->report;
    for (const std::string& p : r->problems) std::cerr << "problem: " << p << "\n";
    return r->ok() ? 0 : 1;
  }
  return 2;
}
