// The sink interface (modelled on the OpenTelemetry eBPF profiler's Reporter) and delivery
// helpers shared by every sink.
//
//   std::unique_ptr<sinks::Sink> sink = std::make_unique<sinks::FileSink>(file_config);
//   profile::Aggregator agg({.window = 10s, .labels = sink->labels(),
//                            .granularity = sink->granularity()});
//   agg.set_new_series_hook([&](profile::Window& w, uint32_t s) { sink->OnNewSeries(w, s); });
//   ...
//   Backoff backoff(RetryPolicy{});    // flamestream/common/backoff.h
//   Status st = sink->Export(*window);
//   if (sinks::IsRetryable(st)) next_try = now + backoff.Next();   // pause input meanwhile
//   else if (!st.ok()) WriteToDlq(*window, st);                     // 4xx: never retried
//
// Export() is synchronous and called from one thread; it returns OK once the backend has
// acknowledged the whole window (remote sinks) or the files are durable (file sink).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "flamestream/common/backoff.h"
#include "flamestream/common/status.h"
#include "flamestream/profile/aggregator.h"

namespace flamestream::sinks {

// TLS for the remote sinks (config `exporter.<sink>.tls.*`). HTTP sinks use TLS when the URL
// is https://; OTLP gRPC when `enabled`. Files are PEM.
struct TlsConfig {
  bool enabled = false;               // OTLP gRPC only (HTTP: the https:// scheme decides)
  std::string ca_file;                // CA bundle to verify the server (empty = system roots)
  std::string cert_file;              // client certificate (mTLS); needs key_file
  std::string key_file;               // client private key (mTLS); needs cert_file
  bool insecure_skip_verify = false;  // do not verify the server certificate (dev only)
};

// Checks that cert/key come as a pair and that every named file can be read.
Status ValidateTls(const TlsConfig& tls, std::string_view what);

// What the backend answered to the last failed Export(): the Retry-After hint and, for a
// permanent refusal, the status and body that go into the DLQ record's headers.
struct Response {
  // Longest body kept (it travels in a DLQ header).
  static constexpr size_t kMaxBody = 4096;
  int status = 0;    // HTTP status, or the gRPC status code; 0 = no answer (connection error)
  std::string body;  // response body or gRPC message, at most kMaxBody bytes
  std::optional<std::chrono::milliseconds> retry_after;  // HTTP Retry-After / gRPC RetryInfo
};

// Retry-After as delay-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT",
// relative to `now`, never negative); nullopt when it is neither.
std::optional<std::chrono::milliseconds> ParseRetryAfter(
    std::string_view value,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// Series of a window the backend refused for good while the rest of the window was delivered
// (Export() returned OK): only their input samples go to the window DLQ.
struct SeriesFailure {
  std::vector<uint32_t> series;  // indices into Window::series
  Status status;                 // the permanent error
  Response response;             // the refusal
};

// A counter a sink keeps (the exporter stage publishes it as a metric with a sink label).
struct SinkCounter {
  std::string name;  // e.g. fs_file_sink_deleted_files_total
  std::string help;
  std::vector<std::pair<std::string, std::string>> labels;  // besides sink=<name>
  uint64_t value = 0;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // "file", "pyroscope", "otlp": names the consumer group flamestream-exporter-<name>.
  [[nodiscard]] virtual std::string_view name() const = 0;
  // Labels this sink keeps (the aggregator drops the rest).
  [[nodiscard]] virtual profile::LabelPolicy labels() const = 0;
  [[nodiscard]] virtual profile::SeriesGranularity granularity() const = 0;
  // A (window, series) was created: the file sink merges what it already wrote there.
  virtual void OnNewSeries(profile::Window& /*window*/, uint32_t /*series*/) {}
  // Delivers one closed window. Errors for which IsRetryable() is true mean "try the same
  // window again later"; any other error is permanent (the caller dead-letters the window).
  // One series never fails a whole window: when the backend refuses some series for good and
  // accepts others, Export() returns OK and failed_series() names the refused ones (a window
  // whose every series is refused returns the error instead).
  virtual Status Export(const profile::Window& window) = 0;
  // After an Export() that returned OK: the series refused permanently (empty = all delivered).
  [[nodiscard]] virtual std::vector<SeriesFailure> failed_series() const { return {}; }
  // Counters for metrics (monotonic; read from the exporter thread between Export() calls).
  [[nodiscard]] virtual std::vector<SinkCounter> Counters() const { return {}; }
  // Checks the configuration and builds clients, so that a bad setting (unreadable TLS file,
  // bad URL) stops the service at start instead of dead-lettering every window.
  virtual Status Start() { return OkStatus(); }
  // The answer to the last failed Export() (empty for sinks without a remote answer).
  [[nodiscard]] virtual Response last_response() const { return {}; }
};

// Unavailable (5xx, 429, connection errors), DeadlineExceeded and ResourceExhausted.
[[nodiscard]] bool IsRetryable(const Status& status);

// Status for an HTTP answer: OK for 2xx; Unavailable for 408, 429 and 5xx (retried);
// FailedPrecondition naming the status and body for any other 4xx (dead-lettered).
[[nodiscard]] Status HttpStatusToStatus(int http_status, std::string_view body);

// The wait a Retry-After asks for, kept within [initial, max] (a huge value must not stall the
// pipeline longer than the operator allows; zero must not turn into a busy loop).
std::chrono::milliseconds RetryAfterDelay(std::chrono::milliseconds retry_after,
                                          const RetryPolicy& policy);

// Closed windows waiting for one sink, delivered oldest first with retries. While the head
// window waits for a retry nothing behind it is attempted, and the owner pauses its input
// (an outage pauses consumption; nothing is dropped).
//
//   queue.Push(std::move(window));
//   for (DeliveryQueue::Done& d : queue.Pump(std::chrono::steady_clock::now())) {
//     if (!d.status.ok()) WriteToDlq(*d.window, d.status);   // permanent failure
//     for (const SeriesFailure& f : d.failed_series) WriteToDlq(*d.window, f);  // only those
//     AckInputsOf(*d.window);                                  // either way: commit may advance
//   }
class DeliveryQueue {
 public:
  struct Done {
    std::unique_ptr<profile::Window> window;
    Status status;  // OK = acknowledged; otherwise a permanent error (dead-letter the window)
    int attempts = 0;
    Response response;  // the refusal, when !status.ok()
    // When status is OK: series refused for good (dead-letter only those), the rest delivered.
    std::vector<SeriesFailure> failed_series;
  };
  DeliveryQueue(Sink& sink, RetryPolicy policy) : sink_(sink), policy_(policy), backoff_(policy) {}

  void Push(std::unique_ptr<profile::Window> window) { queue_.push_back(std::move(window)); }
  // Attempts the head windows whose retry time has come; returns those that finished. After a
  // retryable failure the next attempt waits for the backoff, or for the server's Retry-After
  // (RetryAfterDelay) when it sent one.
  std::vector<Done> Pump(std::chrono::steady_clock::time_point now);

  [[nodiscard]] size_t size() const { return queue_.size(); }
  [[nodiscard]] bool empty() const { return queue_.empty(); }
  // True while the head window failed and waits for its retry.
  [[nodiscard]] bool backing_off() const { return head_attempts_ > 0; }
  [[nodiscard]] std::chrono::steady_clock::time_point next_attempt() const { return next_; }
  // Retryable failures so far (for metrics).
  [[nodiscard]] uint64_t retries() const { return retries_; }
  [[nodiscard]] const Status& last_error() const { return last_error_; }

 private:
  Sink& sink_;
  RetryPolicy policy_;
  Backoff backoff_;
  std::deque<std::unique_ptr<profile::Window>> queue_;
  std::chrono::steady_clock::time_point next_{};
  int head_attempts_ = 0;
  uint64_t retries_ = 0;
  Status last_error_;
};

}  // namespace flamestream::sinks
