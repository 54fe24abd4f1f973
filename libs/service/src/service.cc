#include "flamestream/service/service.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "flamestream/common/strings.h"
#include "flamestream/common/units.h"
#include "flamestream/log/log.h"
#include "flamestream/obs/admin_server.h"

namespace flamestream::service {
namespace {

// Waits for SIGINT/SIGTERM on a dedicated thread. The signals are blocked in the main thread
// before any other thread exists, so every thread inherits the mask and only this one
// receives them (no async-signal-safety concerns in handlers: there are none).
class SignalWatcher {
 public:
  explicit SignalWatcher(std::stop_source stop) : stop_(std::move(stop)) {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  // Separate from the constructor so Spec::before_threads runs while the process still has
  // one thread (the mask is already set, so a signal in between waits for the watcher).
  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  ~SignalWatcher() {
    if (!thread_.joinable()) return;
    done_.store(true);
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  void Loop() {
    int received = 0;
    while (true) {
      int sig = 0;
      if (sigwait(&set_, &sig) != 0 || done_.load()) {
        return;
      }
      ++received;
      if (received == 1) {
        log::Info("shutdown requested; draining", {{"signal", strsignal(sig)}});
        stop_.request_stop();
      } else {
        log::Warn("second signal; exiting without draining", {{"signal", strsignal(sig)}});
        std::_Exit(130);
      }
    }
  }

  std::stop_source stop_;
  sigset_t set_{};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

bool Context::WaitForStop(std::chrono::nanoseconds timeout) const {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  return cv.wait_for(lock, stop, timeout, [] { return false; }) || stop.stop_requested();
}

void CommonConfig::Declare(config::Schema& schema) {
  schema.AddChoice("log.level", &log_level, {"debug", "info", "warn", "error"},
                   "minimum level of log lines", "--log-level");
  schema.AddChoice("log.format", &log_format, {"logfmt", "json"}, "log line format");
  schema.Add("admin.listen", &admin_listen,
             "host:port of the /metrics, /healthz and /readyz listener (port 0 = any free port)",
             "--admin-listen");
  schema.Add("admin.bearer_token_file", &admin_bearer_token_file,
             "file holding a token /metrics then requires as \"Authorization: Bearer <token>\" "
             "(/healthz and /readyz stay open for probes); empty = open");
  schema.Add("admin.tls.cert_file", &admin_tls_cert_file,
             "PEM certificate (chain) of the admin listener; set: it serves HTTPS only");
  schema.Add("admin.tls.key_file", &admin_tls_key_file, "PEM private key of admin.tls.cert_file");
  schema.Add("admin.tls.client_ca_file", &admin_tls_client_ca_file,
             "PEM CA bundle; set: the admin listener requires client certificates it signed "
             "(mutual TLS; kubelet probes then need exec or a TLS-less port)");
  schema.Add("shutdown.deadline", &shutdown_deadline,
             "how long draining may take after SIGTERM before the process exits 1");
  schema.Add("duration", &duration, "stop (and drain) after this long; 0 = run until SIGTERM",
             "--duration");
}

void CommonConfig::DeclareIdentityIfAbsent(config::Schema& schema) {
  if (schema.Find("cluster.name") == nullptr) {
    schema.Add("cluster.name", &cluster, "cluster this instance belongs to (logs)");
  }
  if (schema.Find("node.name") == nullptr) {
    node = DefaultNodeName();
    schema.Add("node.name", &node,
               "node this instance runs on (logs; default NODE_NAME, else the host name)");
  }
}

int Main(int argc, char** argv, const Spec& spec) {
  const std::string program = "flamestream-" + spec.name;
  std::stop_source stop;
  // Before any thread starts (the config loader starts none), so the mask is inherited.
  SignalWatcher signals(stop);

  CommonConfig common;
  common.admin_listen = spec.default_admin_listen;
  config::Schema schema;
  common.Declare(schema);
  if (spec.declare) {
    spec.declare(schema);
  }
  common.DeclareIdentityIfAbsent(schema);
  auto outcome = config::Load(schema, {program, spec.summary, spec.usage_extra}, argc, argv);
  if (!outcome.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), outcome.error().message().c_str());
    return 2;
  }
  if (outcome->help_requested) {
    std::fputs(outcome->help.c_str(), stdout);
    return 0;
  }
  if (Status s = log::Configure(common.log_level, common.log_format); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), s.message().c_str());
    return 2;
  }
  if (spec.before_threads) {
    // Still the only thread: what this hook changes per thread (capabilities) holds for all.
    if (Status s = spec.before_threads(); !s.ok()) {
      log::Error("exiting on error", {{"service", program}, {"error", s.ToString()}});
      return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
    }
  }
  signals.Start();

  obs::Registry registry;
  obs::AdminOptions admin_options;
  if (!common.admin_bearer_token_file.empty()) {
    auto token = obs::ReadTokenFile(common.admin_bearer_token_file, "admin.bearer_token_file");
    if (!token.ok()) {
      std::fprintf(stderr, "%s: %s\n", program.c_str(), token.error().message().c_str());
      return 2;
    }
    admin_options.bearer_token = std::move(*token);
  }
  {
    auto tls = obs::LoadServerTls({.cert_file = common.admin_tls_cert_file,
                                   .key_file = common.admin_tls_key_file,
                                   .client_ca_file = common.admin_tls_client_ca_file},
                                  "admin.tls");
    if (!tls.ok()) {
      std::fprintf(stderr, "%s: %s\n", program.c_str(), tls.error().message().c_str());
      return 2;
    }
    admin_options.tls = std::move(*tls);
  }
  auto admin = obs::AdminServer::Start(common.admin_listen, registry, std::move(admin_options));
  if (!admin.ok()) {
    std::fprintf(stderr, "%s: config key \"admin.listen\": %s\n", program.c_str(),
                 admin.error().message().c_str());
    return 2;
  }
  log::Info("started", {{"service", program}, {"admin_port", (*admin)->port()}});
  if (!outcome->ignored_environment.empty()) {
    // Kubernetes service links (FLAMESTREAM_REDIS_SERVICE_HOST, ...) land here: not ours.
    log::Info("environment variables that are not config keys were ignored",
              {{"names", common::Join(outcome->ignored_environment, ",")}});
  }

  // Deadline watchdog: once stop is requested, run() has shutdown.deadline to return.
  std::atomic<bool> finished{false};
  std::mutex mu;
  std::condition_variable_any cv;
  std::jthread watchdog([&](std::stop_token own) {
    std::unique_lock lock(mu);
    if (common.duration.count() > 0) {
      if (!cv.wait_for(lock, own, common.duration, [&] { return stop.stop_requested(); })) {
        if (own.stop_requested()) return;
        log::Info("duration elapsed; draining",
                  {{"duration", common::FormatDuration(common.duration)}});
        stop.request_stop();
      }
    } else {
      cv.wait(lock, own, [&] { return stop.stop_requested(); });
    }
    if (own.stop_requested() || finished.load()) return;
    if (!cv.wait_for(lock, own, common.shutdown_deadline, [&] { return finished.load(); }) &&
        !own.stop_requested()) {
      log::Error("drain did not finish within shutdown.deadline; exiting",
                 {{"deadline", common::FormatDuration(common.shutdown_deadline)}});
      std::_Exit(1);
    }
  });
  std::stop_callback wake(stop.get_token(), [&] { cv.notify_all(); });

  obs::AdminServer* admin_ptr = admin->get();
  Context ctx{
      .metrics = registry,
      .stop = stop.get_token(),
      .set_ready = [admin_ptr](bool ready) { admin_ptr->SetReady(ready); },
      .set_unhealthy = [admin_ptr](const std::string& why) { admin_ptr->SetUnhealthy(why); },
      .positional = outcome->positional,
      .config_file = outcome->config_file,
  };
  Status status;
  try {
    status = spec.run(ctx);
  } catch (const std::exception& e) {
    status = InternalError("uncaught exception: {}", e.what());
  }
  finished.store(true);
  cv.notify_all();
  watchdog.request_stop();
  if (!status.ok()) {
    log::Error("exiting on error", {{"service", program}, {"error", status.ToString()}});
    return status.code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  log::Info("stopped", {{"service", program}});
  return 0;
}

std::string DefaultNodeName() {
  if (const char* node = std::getenv("NODE_NAME"); node != nullptr && *node != '\0') {
    return common::ToLower(node);
  }
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) {
    return "unknown";
  }
  return common::ToLower(host);
}

}  // namespace flamestream::service
