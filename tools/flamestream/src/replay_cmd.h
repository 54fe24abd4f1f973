// `flamestream replay`: re-symbolize, re-correlate and re-export a time range from the raw
// samples Kafka still holds (ARCHITECTURE.md, "Replay"), e.g. after adding a debug file.
//
//   ReplayOptions o;                          // flags fill it (main.cc)
//   o.from = "-1h";
//   o.build_ids = {"4f1e..."};
//   o.debug_dirs = {"./debug"};               // <dir>/.build-id/4f/1e....debug
//   return RunReplay(o, std::cout, std::cerr); // exit code
//
// The stages run one after another, each in replay mode (its own `-replay` consumer group,
// the `.replay` topics) until it has read its input to the end: the symbolizer (raw samples
// of [from, to], with one symbol epoch), then the correlator, then the exporter. Running them
// in sequence means no stage can mistake a slow upstream for the end of its input. The file
// sink replaces each window file written with an older epoch; Pyroscope and OTLP add what
// they receive, so a replay there is a backfill of a backend or tenant that lacks the data.
// What each stage wrote is counted exactly, off the critical path: the symbolizer's and the
// correlator's `.replay` output at this epoch (read by an audit group per topic while the
// next stage runs), and the file sink's windows at this epoch. Counts that differ between
// stages fail the command; stdout gets one line per stage:
//   symbolizer exit 0       14.5s  in: 11 raw batches  out: 996 samples
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "supervisor.h"

namespace flamestream::cli {

struct ReplayOptions {
  std::string from;                        // required: now, -1h, RFC 3339 UTC, Unix time
  std::string to = "now";
  std::vector<std::string> build_ids;      // hex; their cached symbols are dropped first
  std::string brokers = "127.0.0.1:9092";  // `flamestream up`'s dev broker by default
  std::string redis;                       // the symbolizer's shared cache ("" = none)
  std::vector<std::string> sinks;          // file|pyroscope|otlp; empty: file (+ the URLs given)
  std::string out = "./flamestream-out";   // the file sink's directory
  std::string pyroscope;                   // URL for the pyroscope sink
  std::string otlp;                        // endpoint for the otlp sink
  std::vector<std::string> debug_dirs;     // extra symbolizer debug directories
  // key=value settings, each given to the stage its key belongs to (kafka.* to all three).
  std::vector<std::string> sets;
  std::chrono::nanoseconds window = std::chrono::seconds(10);  // must match the live run's
  std::chrono::nanoseconds stage_timeout = std::chrono::minutes(30);
  uint64_t epoch = 0;                      // 0: the replay's start time in Unix ms
  std::string bin_dir;
};

// What one replay stage did.
struct ReplayStageReport {
  std::string stage;
  std::string exit;            // "exit 0", "signal 9", "timeout", "interrupted", ...
  double seconds = 0;
  std::string summary;         // human-readable in/out figures
  int64_t samples_out = -1;    // exact count of what it wrote at this epoch (-1: unknown)
};

// The stage commands for `o` (binaries resolved, timestamps resolved against `now_ns`,
// admin ports picked); `sets` routed by key prefix. InvalidArgument names the bad flag.
Result<std::vector<StageSpec>> BuildReplayStages(const ReplayOptions& o, uint64_t epoch,
                                                 int64_t now_ns);

// Runs the replay; 0 when every stage caught up and exited 0, 1 when one failed (or wrote
// a different number of samples than it read), 2 for a bad flag or missing binary.
int RunReplay(const ReplayOptions& o, std::ostream& out, std::ostream& err);

}  // namespace flamestream::cli
