#include "spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"

namespace flamestream::agent {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSuffix = ".batch";
constexpr std::string_view kTmpPrefix = ".tmp-";

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write spool file");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Result<std::string> ReadAll(const std::string& path) {
  common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, fmt::format("open {}", path));
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, fmt::format("read {}", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Spool>> Spool::Open(SpoolOptions options) {
  if (options.dir.empty()) return InvalidArgument("agent.spool.dir is empty");
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return Unavailable("create spool dir {}: {}", options.dir, ec.message());
  std::unique_ptr<Spool> spool(new Spool(std::move(options)));
  for (const fs::directory_entry& e : fs::directory_iterator(spool->options_.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(kTmpPrefix)) {
      fs::remove(e.path(), ec);  // a crash mid-write: the batch was never spooled
      continue;
    }
    if (!name.ends_with(kSuffix)) continue;
    Result<uint64_t> seq =
        common::ParseInt<uint64_t>(std::string_view(name).substr(0, name.size() - kSuffix.size()));
    if (!seq.ok()) continue;
    const uint64_t size = e.file_size(ec);
    if (ec) continue;
    spool->files_[*seq] = size;
    spool->bytes_ += size;
  }
  if (ec) return Unavailable("list spool dir {}: {}", spool->options_.dir, ec.message());
  return spool;
}

std::string Spool::PathOf(uint64_t sequence) const {
  return fmt::format("{}/{:020d}{}", options_.dir, sequence, kSuffix);
}

void Spool::DropOldest() {
  auto it = files_.begin();
  std::error_code ec;
  fs::remove(PathOf(it->first), ec);
  bytes_ -= it->second;
  ++stats_.dropped;
  stats_.dropped_bytes += it->second;
  log::Warn("spool full: dropped oldest batch",
            {{"sequence", it->first}, {"bytes", it->second}, {"limit", options_.limit_bytes}});
  files_.erase(it);
}

Status Spool::Append(uint64_t sequence, std::string_view bytes) {
  if (bytes.size() > options_.limit_bytes) {
    ++stats_.dropped;
    stats_.dropped_bytes += bytes.size();
    return ResourceExhausted("batch {} ({} bytes) exceeds the spool limit {}", sequence,
                             bytes.size(), options_.limit_bytes);
  }
  if (files_.contains(sequence)) return OkStatus();  // already spooled (a retry)
  while (!files_.empty() && bytes_ + bytes.size() > options_.limit_bytes) DropOldest();

  const std::string tmp = fmt::format("{}/{}{}", options_.dir, kTmpPrefix, sequence);
  {
    common::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return ErrnoError(errno, fmt::format("create {}", tmp));
    Status s = WriteAll(fd.get(), bytes);
    if (s.ok() && ::fsync(fd.get()) != 0) s = ErrnoError(errno, "fsync spool file");
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
  }
  if (::rename(tmp.c_str(), PathOf(sequence).c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, "rename spool file");
  }
  files_[sequence] = bytes.size();
  bytes_ += bytes.size();
  ++stats_.appended;
  return OkStatus();
}

std::optional<Spool::Entry> Spool::Front() {
  while (!files_.empty()) {
    auto it = files_.begin();
    Result<std::string> data = ReadAll(PathOf(it->first));
    if (data.ok()) return Entry{it->first, std::move(*data)};
    log::Error("unreadable spool file dropped",
               {{"sequence", it->first}, {"error", data.status()}});
    DropOldest();
  }
  return std::nullopt;
}

Status Spool::Remove(uint64_t sequence) {
  auto it = files_.find(sequence);
  if (it == files_.end()) return OkStatus();
  std::error_code ec;
  fs::remove(PathOf(sequence), ec);
  bytes_ -= it->second;
  files_.erase(it);
  if (ec) return Unavailable("remove spool file {}: {}", PathOf(sequence), ec.message());
  return OkStatus();
}

std::optional<uint64_t> Spool::max_sequence() const {
  if (files_.empty()) return std::nullopt;
  return files_.rbegin()->first;
}

}  // namespace flamestream::agent
