// A supervisor for a pipeline of child processes: starts them in order (each waits for the
// previous one to be ready), restarts a crashed one with exponential backoff, and drains
// them in a given order, optionally waiting for a stage's consumer lag to reach zero first.
//
//   std::vector<StageSpec> stages = {
//       {.name = "broker", .binary = "/usr/bin/flamestream-devbroker", .args = {"--port", "9092"},
//        .ready = {.kind = ReadyKind::kTcp, .port = 9092}},
//       {.name = "symbolizer", .binary = ..., .ready = {.kind = ReadyKind::kHttp, .port = 9404},
//        .metrics_port = 9404, .wait_for_lag_zero = true},
//   };
//   Supervisor sup(stages, {.drain_order = {"agent", "symbolizer", "broker"}});
//   FS_RETURN_IF_ERROR(sup.Start());
//   while (!done) { sup.Poll(); sleep(100ms); }
//   Status drained = sup.Drain();
//
// Every child runs in its own process group, so a terminal's Ctrl-C reaches only the
// supervisor, which then drains in order instead of every stage stopping at once. Children
// get SIGTERM if the supervisor dies (PR_SET_PDEATHSIG), so nothing outlives it.
#pragma once

#include "probe.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::cli {

enum class ReadyKind {
  kNone,  // ready once started
  kTcp,   // ready when 127.0.0.1:port accepts a connection
  kHttp,  // ready when GET http://127.0.0.1:port<path> answers 200
};

struct ReadyCheck {
  ReadyKind kind = ReadyKind::kNone;
  int port = 0;
  std::string path = "/readyz";
};

struct StageSpec {
  std::string name;
  std::string binary;              // absolute path
  std::vector<std::string> args;   // without argv[0]
  ReadyCheck ready;
  int metrics_port = 0;            // the admin port serving /metrics (0: none)
  std::string rate_metric;         // counter shown per second in the status line
  // Drain: before stopping this stage wait until fs_consumer_lag (summed) is 0 and its
  // fs_records_in_total stopped moving, so it has consumed everything upstream produced.
  bool wait_for_lag_zero = false;
  std::string log_file;            // stdout and stderr are appended here ("" = inherit)
  // A stage that finishes by itself (replay): "exit 0" marks it done instead of restarting
  // it; "exit 2" (bad configuration) fails it at once; other exits restart it with backoff
  // at most `max_restarts` times, then fail it.
  bool run_to_completion = false;
  int max_restarts = 3;
};

struct Event {
  enum class Kind {
    kStarted,      // detail: pid
    kReady,
    kNotReady,     // the ready check timed out; the stage keeps running
    kExited,       // detail: "exit 3" / "signal 9"
    kRestarting,   // detail: the backoff delay
    kLagWait,      // drain: waiting for the stage's lag
    kLagTimeout,   // drain: gave up waiting
    kStopping,     // drain: SIGTERM sent
    kStopped,      // drain: exited; detail as kExited
    kKilled,       // drain: did not exit within the stop timeout, SIGKILLed
  };
  Kind kind;
  std::string stage;
  std::string detail;
  std::chrono::steady_clock::time_point at;
};
std::string_view EventKindName(Event::Kind kind);

struct SupervisorOptions {
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30'000};
  // A stage that ran this long before crashing starts again from backoff_initial.
  std::chrono::milliseconds stable_after{30'000};
  std::chrono::milliseconds ready_timeout{30'000};
  std::chrono::milliseconds lag_timeout{120'000};
  std::chrono::milliseconds stop_timeout{30'000};
  // Stage names in drain order; stages not listed follow in reverse start order.
  std::vector<std::string> drain_order;
  std::function<void(const Event&)> on_event;
  // Checked while draining: when it returns true, lag waits end and stages are SIGKILLed
  // (a second Ctrl-C).
  std::function<bool()> abort;
};

struct StageState {
  std::string name;
  pid_t pid = -1;       // -1 when not running
  int restarts = 0;
  std::string last_exit;  // "exit 3", "signal 9", "" when it never exited
  bool done = false;      // run_to_completion: exited 0
  bool failed = false;    // run_to_completion: exited non-zero for good
  // Input records the broker deleted before the stage read them (fs_records_skipped_total,
  // summed over restarts; as last scraped, and scraped once more right before each stop).
  double skipped_records = 0;
};

class Supervisor {
 public:
  Supervisor(std::vector<StageSpec> stages, SupervisorOptions options);
  ~Supervisor();  // SIGKILLs and reaps whatever still runs
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts every stage in order, waiting for each one's ready check. A stage that cannot be
  // executed or exits before it is ready is an error naming it (and its log file); stages
  // already started are stopped again.
  Status Start();
  // Reaps exited stages and restarts them when their backoff has passed (run_to_completion
  // stages: see StageSpec). Call often (~100ms).
  void Poll();
  // Stops every stage in drain order (see StageSpec::wait_for_lag_zero); no restarts after
  // this begins. An error lists stages that exited non-zero or had to be killed.
  Status Drain();
  // SIGKILL everything now (a second Ctrl-C).
  void Kill();

  [[nodiscard]] std::vector<StageState> Snapshot() const;
  // A scrape of stage i's /metrics taken by the caller (the status line): keeps its
  // fs_records_skipped_total for Snapshot() even if the stage dies before the next scrape.
  void NoteMetrics(size_t i, const MetricSums& m);
  [[nodiscard]] const std::vector<StageSpec>& stages() const { return specs_; }

 private:
  struct Child {
    pid_t pid = -1;
    int restarts = 0;
    int consecutive_failures = 0;
    std::chrono::steady_clock::time_point started;
    std::optional<std::chrono::steady_clock::time_point> restart_at;
    std::string last_exit;
    bool done = false;
    bool failed = false;
    double skipped = 0;                 // this run's fs_records_skipped_total, last scraped
    double skipped_before_restart = 0;  // earlier runs' totals
  };

  Status Spawn(size_t i);
  Status WaitReady(size_t i);
  // Non-blocking reap of stage i; returns the exit description when it exited.
  std::optional<std::string> Reap(size_t i, bool block);
  void WaitForLag(size_t i);
  Status StopStage(size_t i);
  void Emit(Event::Kind kind, size_t i, std::string detail = "");
  [[nodiscard]] bool Aborted() const;

  std::vector<StageSpec> specs_;
  std::vector<Child> children_;
  SupervisorOptions options_;
  bool draining_ = false;
};

// The exit of a waitpid status as "exit N" / "signal N".
std::string DescribeWaitStatus(int status);

}  // namespace flamestream::cli
