// The sink interface (modelled on the OpenTelemetry eBPF profiler's Reporter) and delivery
// helpers shared by every sink.
//
//   std::unique_ptr<sinks::Sink> sink = std::make_unique<sinks::FileSink>(file_config);
//   profile::Aggregator agg({.window = 10s, .labels = sink->labels(),
//                            .granularity = sink->granularity()});
//   agg.set_new_series_hook([&](profile::Window& w, uint32_t s) { sink->OnNewSeries(w, s); });
//   ...
//   sinks::Backoff backoff(sinks::RetryPolicy{});
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
#include <random>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/profile/aggregator.h"

namespace flamestream::sinks {

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
  virtual Status Export(const profile::Window& window) = 0;
};

// Unavailable (5xx, 429, connection errors), DeadlineExceeded and ResourceExhausted.
[[nodiscard]] bool IsRetryable(const Status& status);

// Status for an HTTP answer: OK for 2xx; Unavailable for 408, 429 and 5xx (retried);
// FailedPrecondition naming the status and body for any other 4xx (dead-lettered).
[[nodiscard]] Status HttpStatusToStatus(int http_status, std::string_view body);

struct RetryPolicy {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{30'000};
  double multiplier = 2.0;
  // Each delay is scaled by a random factor in [1 - jitter, 1 + jitter] so that many
  // exporters recovering from one outage do not retry in lockstep.
  double jitter = 0.2;
};

// Exponential backoff with jitter: initial, initial*m, ... capped at max.
class Backoff {
 public:
  explicit Backoff(RetryPolicy policy, uint32_t seed = std::random_device{}())
      : policy_(policy), rng_(seed) {}
  std::chrono::milliseconds Next();
  void Reset() { attempt_ = 0; }
  [[nodiscard]] int attempts() const { return attempt_; }

 private:
  RetryPolicy policy_;
  std::mt19937 rng_;
  int attempt_ = 0;
};

// Closed windows waiting for one sink, delivered oldest first with retries. While the head
// window waits for a retry nothing behind it is attempted, and the owner pauses its input
// (an outage pauses consumption; nothing is dropped).
//
//   queue.Push(std::move(window));
//   for (DeliveryQueue::Done& d : queue.Pump(std::chrono::steady_clock::now())) {
//     if (!d.status.ok()) WriteToDlq(*d.window, d.status);   // permanent failure
//     AckInputsOf(*d.window);                                  // either way: commit may advance
//   }
class DeliveryQueue {
 public:
  struct Done {
    std::unique_ptr<profile::Window> window;
    Status status;  // OK = acknowledged; otherwise a permanent error (dead-letter the window)
    int attempts = 0;
  };
  DeliveryQueue(Sink& sink, RetryPolicy policy) : sink_(sink), backoff_(policy) {}

  void Push(std::unique_ptr<profile::Window> window) { queue_.push_back(std::move(window)); }
  // Attempts the head windows whose retry time has come; returns those that finished.
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
  Backoff backoff_;
  std::deque<std::unique_ptr<profile::Window>> queue_;
  std::chrono::steady_clock::time_point next_{};
  int head_attempts_ = 0;
  uint64_t retries_ = 0;
  Status last_error_;
};

}  // namespace flamestream::sinks
