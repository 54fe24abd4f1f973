// Exponential backoff with jitter, the one retry schedule of every client that reconnects or
// resends (exporter sinks, the Redis symbol cache).
//
//   Backoff backoff({.initial = 200ms, .max = 30s});
//   while (!TrySend()) std::this_thread::sleep_for(backoff.Next());   // 200ms, 400ms, ... 30s
//   backoff.Reset();                                                  // after a success
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace flamestream {

struct RetryPolicy {
  std::chrono::milliseconds initial{200};
  // Also caps a server's Retry-After.
  std::chrono::milliseconds max{30'000};
  double multiplier = 2.0;
  // Each delay is scaled by a random factor in [1 - jitter, 1 + jitter] so that many clients
  // recovering from one outage do not retry in lockstep.
  double jitter = 0.2;
};

// The un-jittered delay before retry number `attempt` (0-based): initial * multiplier^attempt,
// capped at max.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int attempt);

// BackoffDelay(0), BackoffDelay(1), ... each jittered; at least 1 ms.
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

}  // namespace flamestream
