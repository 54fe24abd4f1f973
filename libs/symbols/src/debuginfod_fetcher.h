// Asynchronous debuginfod downloads for the DebugLocator: a small pool of worker threads, each
// with its own libdebuginfod client (a client is not thread-safe), so no lookup ever waits for
// the network under the Symbolizer's lock.
//
//   DebuginfodFetcher::Options opts{.concurrency = 4, .max_size = 1 << 30,
//                                   .timeout = std::chrono::minutes(3)};
//   auto fetcher = DebuginfodFetcher::CreateFromEnv(opts);   // null when DEBUGINFOD_URLS is unset
//   auto a = fetcher->Poll("4f1e...", DebuginfodFetcher::Kind::kDebugInfo);
//   // a.state == kPending: queued (once per build id and kind) or already downloading; ask again
//   // after WaitForProgress() or in a later batch. kFound: a.path is in the client cache.
//   // kFailed: a.error (NotFound, ResourceExhausted for a file over max_size,
//   // DeadlineExceeded after `timeout`, Unavailable for anything else).
//
// Bounded: at most `max_pending` downloads queued or running (more are refused as queue_full
// and asked again by a later Poll), at most `max_results` finished answers kept (oldest first
// out). A found path is kept, so several lookups of one build id (locating, then opening) see
// it; a failure is handed out once, so the next Poll after the caller's negative entry expired
// downloads again.
// The size cap and the timeout are enforced from libdebuginfod's progress callback (called at
// least once a second while a transfer runs), which aborts the transfer; the destructor aborts
// running downloads the same way and joins the workers.
// Thread-safe.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "flamestream/common/status.h"
#include "flamestream/symbols/debug_locator.h"

namespace flamestream::symbols {

class DebuginfodFetcher {
 public:
  enum class Kind { kDebugInfo, kExecutable };
  struct Options {
    int concurrency = 4;
    uint64_t max_size = uint64_t{1} << 30;
    std::chrono::nanoseconds timeout = std::chrono::minutes(3);
    size_t max_pending = 1024;
    size_t max_results = 4096;
  };
  struct Answer {
    enum State { kPending, kFound, kFailed };
    State state = kPending;
    std::string path;  // kFound
    Status error;      // kFailed
  };

  // Null when DEBUGINFOD_URLS is unset or empty.
  static std::unique_ptr<DebuginfodFetcher> CreateFromEnv(Options options);
  explicit DebuginfodFetcher(Options options);
  ~DebuginfodFetcher();
  DebuginfodFetcher(const DebuginfodFetcher&) = delete;
  DebuginfodFetcher& operator=(const DebuginfodFetcher&) = delete;

  // Never blocks on the network (see the file comment).
  Answer Poll(std::string_view build_id, Kind kind);

  // Counts finished downloads; WaitForProgress(g, deadline) returns once the count is past `g`
  // or at `deadline` (true when something finished). Read the count before looking, so a
  // download that finishes in between is not missed.
  [[nodiscard]] uint64_t generation() const;
  bool WaitForProgress(uint64_t seen, std::chrono::steady_clock::time_point deadline);

  [[nodiscard]] DebuginfodStats stats() const;

 private:
  enum class Reason { kNone, kTooLarge, kTimeout, kStopping };
  struct Entry {
    Answer answer;
    uint64_t seq = 0;  // which result_order_ record belongs to this entry
  };
  struct Job {
    std::string key;
    std::string build_id;
    Kind kind;
  };
  struct Transfer;  // the progress callback's view of one running download

  static std::string Key(std::string_view build_id, Kind kind);
  // Under mu_: queues `key` unless known or the queue is full (then false).
  bool EnqueueLocked(const std::string& key, std::string_view build_id, Kind kind);
  void WorkerLoop();
  Answer Download(void* client, const Job& job);
  static int OnProgress(void* client, long downloaded, long total);

  Options options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;      // a job was queued, or stopping
  std::condition_variable progress_cv_;  // a download finished
  bool stopping_ = false;
  std::atomic<bool> stop_transfers_{false};
  absl::flat_hash_map<std::string, Entry> entries_;  // pending and finished, by Key()
  std::deque<Job> queue_;
  std::deque<std::pair<std::string, uint64_t>> result_order_;  // finished, oldest first
  size_t pending_ = 0;   // entries in kPending (queued + running)
  size_t finished_ = 0;  // entries not in kPending
  uint64_t seq_ = 0;
  uint64_t generation_ = 0;
  std::vector<std::thread> workers_;  // started on demand, up to options_.concurrency
  DebuginfodStats stats_;
};

}  // namespace flamestream::symbols
