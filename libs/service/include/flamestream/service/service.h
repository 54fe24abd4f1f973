// The frame of every Flamestream service: config, logs, admin listener, signals and drain.
//
//   int main(int argc, char** argv) {
//     SymbolizerConfig cfg;                               // in-class defaults
//     return service::Main(argc, argv, {
//         .name = "symbolizer",
//         .summary = "resolves raw frames to functions, files and lines",
//         .declare = [&](config::Schema& s) { cfg.Declare(s); },
//         .run = [&](service::Context& ctx) { return RunSymbolizer(cfg, ctx); },
//     });
//   }
//
// Main() declares the common keys (log.level, log.format, admin.listen, shutdown.deadline,
// duration), loads the config (exit 2 naming the bad key), serves /metrics /healthz /readyz,
// and calls run() on the main thread. SIGTERM or SIGINT (or `duration` elapsing) requests
// stop through ctx.stop; run() then stops consuming, finishes in-flight work, flushes,
// commits and returns. If it has not returned within shutdown.deadline the process exits 1.
// A second SIGINT/SIGTERM exits at once (status 130).
#pragma once

#include <chrono>
#include <functional>
#include <stop_token>
#include <string>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/config/config.h"
#include "flamestream/obs/metrics.h"

namespace flamestream::service {

struct Context {
  obs::Registry& metrics;
  std::stop_token stop;                 // requested on SIGTERM/SIGINT or when duration elapses
  std::function<void(bool)> set_ready;  // drives /readyz
  std::function<void(const std::string&)> set_unhealthy;  // drives /healthz (503 + reason)
  std::vector<std::string> positional;                    // non-flag arguments
  std::string config_file;                                // --config path, if any
  // Blocks until stop is requested or `timeout` passes; true when stop was requested.
  bool WaitForStop(std::chrono::nanoseconds timeout) const;
};

struct Spec {
  std::string name;         // "agent" -> program name flamestream-agent
  std::string summary;      // one line for --help
  std::string usage_extra;  // optional text for --help (subcommands, examples)
  std::function<void(config::Schema&)> declare;
  // Optional: runs on the main thread after the config is loaded and logging is set up, while
  // the process has no other thread (before the signal watcher, the admin listener and run()).
  // For work whose effect is per thread, e.g. loading BPF and then dropping capabilities,
  // which every later thread then inherits. An error exits (2 for InvalidArgument, else 1).
  std::function<Status()> before_threads;
  std::function<Status(Context&)> run;
  std::string default_admin_listen = "127.0.0.1:0";
};

// Common settings every service has (filled by Main before run()).
struct CommonConfig {
  std::string log_level = "info";
  std::string log_format = "logfmt";
  std::string admin_listen;
  std::string admin_bearer_token_file;
  std::string admin_tls_cert_file;  // admin.tls.*: HTTPS on the admin listener
  std::string admin_tls_key_file;
  std::string admin_tls_client_ca_file;
  std::chrono::nanoseconds shutdown_deadline = std::chrono::seconds(30);
  std::chrono::nanoseconds duration{0};
  // Identity shared by every service of a deployment (one env var set for all of them):
  // declared here unless the service binds the keys itself (the agent does).
  std::string cluster = "default";
  std::string node;
  void Declare(config::Schema& schema);
  void DeclareIdentityIfAbsent(config::Schema& schema);
};

int Main(int argc, char** argv, const Spec& spec);

// This node's name for record keys (common::NodeKey): NODE_NAME (the Kubernetes downward API)
// when set, else the host name; lower case.
std::string DefaultNodeName();

}  // namespace flamestream::service
