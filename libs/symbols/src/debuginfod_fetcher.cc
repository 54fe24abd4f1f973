#include "debuginfod_fetcher.h"

#include <elfutils/debuginfod.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"

namespace flamestream::symbols {

// What OnProgress needs about the download its client runs (debuginfod_set_user_data).
struct DebuginfodFetcher::Transfer {
  const DebuginfodFetcher* fetcher;
  uint64_t max_size;
  std::chrono::steady_clock::time_point deadline;
  Reason aborted = Reason::kNone;
  uint64_t seen_size = 0;  // the larger of bytes received and the announced length
};

std::unique_ptr<DebuginfodFetcher> DebuginfodFetcher::CreateFromEnv(Options options) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls == nullptr || common::Trim(urls).empty()) {
    return nullptr;
  }
  return std::make_unique<DebuginfodFetcher>(options);
}

DebuginfodFetcher::DebuginfodFetcher(Options options) : options_(options) {
  options_.concurrency = std::max(options_.concurrency, 1);
  options_.max_pending = std::max<size_t>(options_.max_pending, 1);
}

DebuginfodFetcher::~DebuginfodFetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_transfers_.store(true);
  work_cv_.notify_all();
  for (std::thread& t : workers_) {
    t.join();
  }
}

std::string DebuginfodFetcher::Key(std::string_view build_id, Kind kind) {
  return (kind == Kind::kDebugInfo ? "d:" : "x:") + std::string(build_id);
}

bool DebuginfodFetcher::EnqueueLocked(const std::string& key, std::string_view build_id,
                                      Kind kind) {
  if (stopping_) {
    return false;
  }
  if (pending_ >= options_.max_pending) {
    ++stats_.queue_full;
    return false;
  }
  entries_[key] = Entry{};  // kPending
  ++pending_;
  queue_.push_back(Job{key, std::string(build_id), kind});
  if (workers_.size() < static_cast<size_t>(options_.concurrency) &&
      workers_.size() < pending_) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  work_cv_.notify_one();
  return true;
}

DebuginfodFetcher::Answer DebuginfodFetcher::Poll(std::string_view build_id, Kind kind) {
  const std::string key = Key(build_id, kind);
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    Answer& answer = it->second.answer;
    if (answer.state == Answer::kPending) {
      return answer;
    }
    std::error_code ec;
    if (answer.state == Answer::kFound && std::filesystem::is_regular_file(answer.path, ec)) {
      return answer;
    }
    // A failure is handed out once; a found file that left the client cache is fetched again.
    Answer out = std::move(answer);
    entries_.erase(it);
    --finished_;
    if (out.state == Answer::kFailed) {
      return out;
    }
  }
  EnqueueLocked(key, build_id, kind);
  return Answer{};
}

uint64_t DebuginfodFetcher::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

bool DebuginfodFetcher::WaitForProgress(uint64_t seen,
                                        std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return progress_cv_.wait_until(lock, deadline,
                                 [&] { return generation_ != seen || stopping_; }) &&
         generation_ != seen;
}

DebuginfodStats DebuginfodFetcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  DebuginfodStats s = stats_;
  s.queued = queue_.size();
  return s;
}

int DebuginfodFetcher::OnProgress(void* client, long downloaded, long total) {
  auto* t = static_cast<Transfer*>(
      debuginfod_get_user_data(static_cast<debuginfod_client*>(client)));
  if (t == nullptr) {
    return 0;
  }
  if (t->fetcher->stop_transfers_.load(std::memory_order_relaxed)) {
    t->aborted = Reason::kStopping;
    return 1;
  }
  // `total` is the announced length (0 while unknown), `downloaded` the bytes so far.
  const uint64_t size = std::max<uint64_t>(downloaded > 0 ? static_cast<uint64_t>(downloaded) : 0,
                                           total > 0 ? static_cast<uint64_t>(total) : 0);
  t->seen_size = std::max(t->seen_size, size);
  if (size > t->max_size) {
    t->aborted = Reason::kTooLarge;
    return 1;
  }
  if (std::chrono::steady_clock::now() >= t->deadline) {
    t->aborted = Reason::kTimeout;
    return 1;
  }
  return 0;
}

DebuginfodFetcher::Answer DebuginfodFetcher::Download(void* raw_client, const Job& job) {
  auto* client = static_cast<debuginfod_client*>(raw_client);
  Transfer transfer{this, options_.max_size, std::chrono::steady_clock::now() + options_.timeout};
  debuginfod_set_user_data(client, &transfer);
  char* path = nullptr;
  const auto* id = reinterpret_cast<const unsigned char*>(job.build_id.c_str());
  // A build id length of 0 tells libdebuginfod the id is a hex string.
  const int fd = job.kind == Kind::kExecutable
                     ? debuginfod_find_executable(client, id, 0, &path)
                     : debuginfod_find_debuginfo(client, id, 0, &path);
  debuginfod_set_user_data(client, nullptr);
  std::string found = path != nullptr ? path : "";
  std::free(path);  // NOLINT(cppcoreguidelines-no-malloc): libdebuginfod's contract
  const char* what = job.kind == Kind::kExecutable ? "executable" : "debuginfo";
  Answer answer;
  answer.state = Answer::kFailed;
  if (fd >= 0) {
    ::close(fd);
    // The cap also holds when the transfer was too short-lived for a progress callback.
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(found, ec);
    if (!found.empty() && !ec && size <= options_.max_size) {
      answer.state = Answer::kFound;
      answer.path = std::move(found);
      return answer;
    }
    if (!ec && size > options_.max_size) {
      transfer.aborted = Reason::kTooLarge;
      transfer.seen_size = size;
      std::filesystem::remove(found, ec);  // keep it out of the client cache too
    } else {
      answer.error = Unavailable("debuginfod {} of {}: no cached file ({})", what, job.build_id,
                                 found.empty() ? "no path" : found);
      return answer;
    }
  }
  switch (transfer.aborted) {
    case Reason::kTooLarge:
      answer.error = ResourceExhausted(
          "debuginfod {} of {} is larger than symbolizer.debuginfod.max_size ({} > {} bytes)",
          what, job.build_id, transfer.seen_size, options_.max_size);
      break;
    case Reason::kTimeout:
      answer.error = DeadlineExceeded("debuginfod {} of {} took longer than {} ms", what,
                                      job.build_id,
                                      std::chrono::duration_cast<std::chrono::milliseconds>(
                                          options_.timeout)
                                          .count());
      break;
    case Reason::kStopping:
      answer.error = CancelledError("debuginfod {} of {}: shutting down", what, job.build_id);
      break;
    case Reason::kNone:
      if (fd == -ENOENT) {
        answer.error = NotFound("debuginfod has no {} for build id {}", what, job.build_id);
      } else {
        answer.error = Unavailable("debuginfod {} of {}: {}", what, job.build_id,
                                   std::strerror(-fd));
      }
      break;
  }
  return answer;
}

void DebuginfodFetcher::WorkerLoop() {
  struct ClientDeleter {
    void operator()(debuginfod_client* c) const { debuginfod_end(c); }
  };
  std::unique_ptr<debuginfod_client, ClientDeleter> client(debuginfod_begin());
  if (client) {
    debuginfod_set_progressfn(client.get(), [](debuginfod_client* c, long a, long b) {
      return OnProgress(c, a, b);
    });
  } else {
    log::Warn("debuginfod client could not start", {});
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      return;
    }
    Job job = std::move(queue_.front());
    queue_.pop_front();
    ++stats_.in_flight;
    stats_.max_in_flight = std::max(stats_.max_in_flight, stats_.in_flight);
    lock.unlock();
    Answer answer;
    if (client) {
      answer = Download(client.get(), job);
    } else {
      answer.state = Answer::kFailed;
      answer.error = Unavailable("debuginfod client could not start");
    }
    if (answer.state == Answer::kFailed) {
      log::Debug("debuginfod download failed",
                 {{"build_id", job.build_id}, {"error", answer.error}});
    }
    lock.lock();
    --stats_.in_flight;
    --pending_;
    switch (answer.error.code()) {
      case StatusCode::kOk: ++stats_.found; break;
      case StatusCode::kNotFound: ++stats_.not_found; break;
      case StatusCode::kResourceExhausted: ++stats_.too_large; break;
      case StatusCode::kDeadlineExceeded: ++stats_.timeouts; break;
      case StatusCode::kCancelled: break;
      default: ++stats_.errors; break;
    }
    auto it = entries_.find(job.key);
    if (it != entries_.end()) {
      it->second.answer = std::move(answer);
      it->second.seq = ++seq_;
      ++finished_;
      result_order_.emplace_back(job.key, seq_);
      // Oldest finished answers go first; a record whose entry was handed out or re-queued
      // since is skipped.
      while (finished_ > options_.max_results && !result_order_.empty()) {
        auto [key, seq] = std::move(result_order_.front());
        result_order_.pop_front();
        auto old = entries_.find(key);
        if (old != entries_.end() && old->second.seq == seq &&
            old->second.answer.state != Answer::kPending) {
          entries_.erase(old);
          --finished_;
        }
      }
      // Records of answers handed out since (failures, files gone from the client cache)
      // stay behind; drop them once they outnumber the live ones.
      if (result_order_.size() > 2 * finished_ + 64) {
        std::deque<std::pair<std::string, uint64_t>> live;
        for (auto& record : result_order_) {
          auto e = entries_.find(record.first);
          if (e != entries_.end() && e->second.seq == record.second &&
              e->second.answer.state != Answer::kPending) {
            live.push_back(std::move(record));
          }
        }
        result_order_ = std::move(live);
      }
    }
    ++generation_;
    progress_cv_.notify_all();
  }
}

}  // namespace flamestream::symbols
