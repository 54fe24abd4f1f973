#include "flamestream/sinks/file_sink.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"
#include "flamestream/profile/labels.h"

namespace flamestream::sinks {
namespace internal {
extern const std::string_view kFlameGraphTemplate;  // generated from assets/flamegraph
}  // namespace internal

namespace fs = std::filesystem;
namespace pp = ::perftools::profiles;

namespace {

constexpr std::string_view kSuffix = ".pb.gz";

// A failed write to the output directory. The storage being unavailable (full, over quota,
// read-only after an error, an NFS server away, an I/O error) is the file sink being down:
// Unavailable, so the window is retried and the exporter pauses its input instead of
// dead-lettering every window until someone fixes the disk. Anything else keeps its code.
Status WriteError(int err, std::string_view what) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EROFS:
    case EIO:
    case ESTALE:
    case ETIMEDOUT:
    case ENOTCONN:
    case ENFILE:
    case EMFILE:
    case ENOMEM:
    case EAGAIN:
    case EBUSY:
      return Unavailable("{}: {} (storage unavailable; retrying)", what, std::strerror(err));
    default:
      return ErrnoError(err, what);
  }
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError(errno, fmt::format("open {}", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return WriteError(errno, fmt::format("write {}", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

// JSON string literal, safe inside <script>: '<' is escaped so "</script>" cannot occur.
void JsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      default:
        if (u < 0x20) {
          out += fmt::format("\\u{:04x}", u);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string SafeFileName(std::string_view service) {
  auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  };
  const bool safe = !service.empty() && service.size() <= kMaxSafeFileName && service[0] != '.' &&
                    std::all_of(service.begin(), service.end(), ok);
  if (safe) return std::string(service);
  // Slug + hash of the whole name: 9 bytes of "-<hash>" after at most the rest.
  std::string out;
  for (const char c : service.substr(0, kMaxSafeFileName - 9)) out.push_back(ok(c) ? c : '_');
  if (!out.empty() && out[0] == '.') out[0] = '_';
  return out + "-" + profile::ShortHash(service);
}

Status WriteFileAtomic(const std::string& path, std::string_view data) {
  const fs::path target(path);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) return WriteError(ec.value(), fmt::format("mkdir {}", target.parent_path().string()));
  const std::string tmp =
      (target.parent_path() / fmt::format(".{}.tmp.{}", target.filename().string(), ::getpid()))
          .string();
  {
    common::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return WriteError(errno, fmt::format("create {}", tmp));
    Status st = WriteAll(fd.get(), data, tmp);
    if (st.ok() && ::fsync(fd.get()) != 0) st = WriteError(errno, fmt::format("fsync {}", tmp));
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return WriteError(err, fmt::format("rename {} -> {}", tmp, path));
  }
  // The rename is durable only once the directory entry is.
  common::UniqueFd dir(::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) (void)::fsync(dir.get());
  return OkStatus();
}

std::string RenderFlameGraphPage(std::string_view title,
                                 const std::vector<profile::FoldedStack>& stacks,
                                 std::string_view page_template) {
  // Merge by (span, frames) and intern frame and span names.
  std::map<std::pair<std::string, std::vector<std::string>>, int64_t> merged;
  for (const profile::FoldedStack& s : stacks) {
    if (s.count != 0) merged[{s.span_name, s.frames}] += s.count;
  }
  std::map<std::string, int> names, spans;
  std::vector<std::string> name_list, span_list;
  auto intern = [](std::map<std::string, int>& m, std::vector<std::string>& list,
                   const std::string& s, int base) {
    auto [it, inserted] = m.try_emplace(s, static_cast<int>(list.size()) + base);
    if (inserted) list.push_back(s);
    return it->second;
  };
  std::string rows;
  for (const auto& [key, count] : merged) {
    const int span = key.first.empty() ? 0 : intern(spans, span_list, key.first, 1);
    rows += rows.empty() ? "[" : ",[";
    rows += fmt::format("{},{}", span, count);
    for (const std::string& f : key.second)
      rows += fmt::format(",{}", intern(names, name_list, f, 0));
    rows += "]";
  }
  std::string json = "{\"title\":";
  JsonString(json, title);
  json += R"(,"unit":"samples","names":[)";
  for (size_t i = 0; i < name_list.size(); ++i) {
    if (i != 0) json += ",";
    JsonString(json, name_list[i]);
  }
  json += "],\"spans\":[";
  for (size_t i = 0; i < span_list.size(); ++i) {
    if (i != 0) json += ",";
    JsonString(json, span_list[i]);
  }
  json += "],\"stacks\":[" + rows + "]}";

  std::string page(page_template.empty() ? internal::kFlameGraphTemplate : page_template);
  page = common::ReplaceAll(page, "__FLAMESTREAM_TITLE__", HtmlEscape(title));
  const size_t at = page.find("__FLAMESTREAM_DATA__");
  if (at != std::string::npos)
    page.replace(at, std::string_view("__FLAMESTREAM_DATA__").size(), json);
  return page;
}

Result<std::string> LoadPageTemplate(const std::string& configured, std::string* source) {
  std::vector<std::string> candidates;
  if (!configured.empty()) {
    candidates.push_back(configured);
  } else {
    if (const char* share = std::getenv("FLAMESTREAM_SHARE_DIR"); share != nullptr && *share) {
      candidates.push_back((fs::path(share) / "flamegraph.html").string());
    }
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      candidates.push_back(
          (exe.parent_path().parent_path() / "share/flamestream/flamegraph.html").string());
    }
  }
  for (const std::string& path : candidates) {
    std::error_code ec;
    if (configured.empty() && !fs::exists(path, ec)) continue;
    Result<std::string> text = ReadFile(path);
    if (!text.ok()) return text.error().WithContext("exporter.file.page_template");
    if (text->find("__FLAMESTREAM_DATA__") == std::string::npos) {
      return InvalidArgument(
          "exporter.file.page_template: {} has no __FLAMESTREAM_DATA__ placeholder", path);
    }
    *source = path;
    return text;
  }
  *source = "built-in";
  return std::string();
}

FileSink::FileSink(FileSinkConfig config) : config_(std::move(config)) {}

std::string FileSink::WindowPath(std::string_view service, int64_t start_ns) const {
  return (fs::path(config_.out_dir) / SafeFileName(service) /
          (profile::WindowFileStem(start_ns) + std::string(kSuffix)))
      .string();
}

void FileSink::OnNewSeries(profile::Window& window, uint32_t series) {
  const profile::SeriesKey& key = window.series[series].key;
  const std::string path = WindowPath(
      key.service + std::string(profile::NamesOf(key.profile).file_suffix), window.start_ns);
  if (!fs::exists(path)) return;
  Result<std::string> bytes = ReadFile(path);
  Result<pp::Profile> existing =
      bytes.ok() ? profile::DecodePprof(*bytes) : Result<pp::Profile>(bytes.status());
  if (!existing.ok()) {
    // Not ours or damaged: the new window replaces it (logged once, here).
    log::Warn("file sink: ignoring unreadable window file",
              {{"path", path}, {"error", existing.status()}});
    return;
  }
  const uint64_t epoch = profile::EpochOf(*existing);
  if (epoch != window.symbol_epoch) return;  // a replay replaces; an older run is not merged
  if (Status st = profile::ImportPprof(*existing, window, series); !st.ok()) {
    log::Warn("file sink: cannot merge window file", {{"path", path}, {"error", st}});
  }
}

Status FileSink::Export(const profile::Window& window) {
  failed_.clear();
  std::vector<std::string> written;  // services whose window file is in place
  Status first_error;
  auto fail = [&](const std::string& service, std::vector<uint32_t> series, Status st) {
    log::Error("file sink: cannot write service, dead-lettering its series",
               {{"service", service}, {"error", st}});
    if (first_error.ok()) first_error = st;
    failed_.push_back({.series = std::move(series), .status = std::move(st), .response = {}});
  };
  // The series a file name stands for ("<service>" or "<service>.off_cpu").
  auto series_of_file = [&](const std::string& file_service) {
    for (const auto& [svc, profile_type] : window.ServiceProfiles()) {
      if (svc + std::string(profile::NamesOf(profile_type).file_suffix) == file_service) {
        return window.SeriesOf(svc, profile_type);
      }
    }
    return std::vector<uint32_t>{};
  };
  for (const auto& [series_service, profile_type] : window.ServiceProfiles()) {
    // Off-CPU series get their own files beside the service's CPU ones ("<service>.off_cpu").
    const std::string service =
        series_service + std::string(profile::NamesOf(profile_type).file_suffix);
    const std::vector<uint32_t> series = window.SeriesOf(series_service, profile_type);
    titles_[SafeFileName(service)] = service;
    const std::string path = WindowPath(service, window.start_ns);
    if (fs::exists(path)) {
      Result<std::string> bytes = ReadFile(path);
      if (bytes.ok()) {
        Result<pp::Profile> existing = profile::DecodePprof(*bytes);
        if (existing.ok() && profile::EpochOf(*existing) > window.symbol_epoch) {
          log::Info(
              "file sink: newer symbol epoch already written, keeping it",
              {{"path", path}, {"epoch", static_cast<unsigned long long>(window.symbol_epoch)}});
          continue;
        }
      }
    }
    perftools::profiles::Profile p =
        profile::EncodePprof(window, series, {.labels = labels(), .batch_comments = true});
    Result<std::string> gz = profile::GzipPprof(p);
    Status st = gz.ok() ? WriteFileAtomic(path, *gz) : gz.status();
    // Disk full and the like: the whole window is tried again (rewriting is idempotent).
    if (IsRetryable(st)) return st;
    if (!st.ok()) {
      fail(service, series, std::move(st));
      continue;
    }
    written.push_back(service);
  }
  std::vector<std::string> touched;
  uint64_t deleted = 0;
  if (Status st = ApplyRetention(profile::WindowFileStem(window.start_ns), &touched, &deleted);
      !st.ok()) {
    log::Warn("file sink: retention incomplete", {{"error", st}});
  }
  if (config_.views) {
    for (const std::string& service : written) {
      Status st = WriteViews(service);
      if (IsRetryable(st)) return st;
      if (!st.ok()) fail(service, series_of_file(service), std::move(st));
      std::erase(touched, SafeFileName(service));
    }
  }
  for (const std::string& dir : touched) {
    // Services not in this window that lost files: rebuild their views (or remove them).
    auto it = titles_.find(dir);
    if (Status st = WriteViewsOf(dir, it != titles_.end() ? std::string_view(it->second) : dir);
        !st.ok()) {
      log::Warn("file sink: cannot rebuild views after retention", {{"dir", dir}, {"error", st}});
    }
  }
  if (!failed_.empty() && failed_.size() == window.Services().size()) {
    failed_.clear();  // nothing delivered: the window fails as a whole
    return first_error;
  }
  return OkStatus();
}

std::vector<SinkCounter> FileSink::Counters() const {
  return {{.name = "fs_file_sink_deleted_files_total",
           .help = "window files deleted by retention (exporter.file.retention.*)",
           .labels = {},
           .value = deleted_files_}};
}

uint64_t FileSink::ApplyRetention(std::string_view keep_stem) {
  std::vector<std::string> touched;
  uint64_t deleted = 0;
  if (Status st = ApplyRetention(keep_stem, &touched, &deleted); !st.ok()) {
    log::Warn("file sink: retention incomplete", {{"error", st}});
  }
  for (const std::string& dir : touched) {
    auto it = titles_.find(dir);
    (void)WriteViewsOf(dir, it != titles_.end() ? std::string_view(it->second) : dir);
  }
  return deleted;
}

Status FileSink::ApplyRetention(std::string_view keep_stem, std::vector<std::string>* touched,
                                uint64_t* deleted) {
  const auto max_age = config_.retention.max_age;
  const uint64_t max_bytes = config_.retention.max_bytes;
  if (max_age.count() <= 0 && max_bytes == 0) return OkStatus();
  struct File {
    fs::file_time_type mtime;
    std::string path;
    std::string dir;
    uint64_t size = 0;
  };
  std::vector<File> files;
  uint64_t total = 0;
  const std::string keep = std::string(keep_stem) + std::string(kSuffix);
  std::error_code ec;
  for (const fs::directory_entry& d : fs::directory_iterator(config_.out_dir, ec)) {
    const std::string dir = d.path().filename().string();
    std::error_code dec;
    if (dir.empty() || dir[0] == '.' || !d.is_directory(dec)) continue;
    for (const fs::directory_entry& e : fs::directory_iterator(d.path(), dec)) {
      const std::string name = e.path().filename().string();
      if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix) || name[0] == '.') continue;
      std::error_code fec;
      const uint64_t size = e.file_size(fec);
      const fs::file_time_type mtime = e.last_write_time(fec);
      if (fec) continue;  // gone meanwhile
      total += size;
      if (name == keep) continue;  // the window being written
      files.push_back({mtime, e.path().string(), dir, size});
    }
  }
  if (ec) return InternalError("list {}: {}", config_.out_dir, ec.message());
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) {
    return std::tie(a.mtime, a.path) < std::tie(b.mtime, b.path);
  });
  const fs::file_time_type now = fs::file_time_type::clock::now();
  Status first_error;
  auto remove = [&](const File& f) {
    std::error_code rec;
    if (!fs::remove(f.path, rec) && rec) {
      if (first_error.ok()) first_error = InternalError("delete {}: {}", f.path, rec.message());
      return;
    }
    total -= std::min(total, f.size);
    ++*deleted;
    ++deleted_files_;
    if (std::find(touched->begin(), touched->end(), f.dir) == touched->end())
      touched->push_back(f.dir);
  };
  size_t i = 0;
  if (max_age.count() > 0) {
    for (; i < files.size() && now - files[i].mtime > max_age; ++i) remove(files[i]);
  }
  if (max_bytes > 0) {
    for (; i < files.size() && total > max_bytes; ++i) remove(files[i]);
  }
  if (*deleted > 0) {
    log::Info("file sink: retention deleted window files",
              {{"files", static_cast<unsigned long long>(*deleted)},
               {"bytes_left", static_cast<unsigned long long>(total)}});
  }
  return first_error;
}

Status FileSink::WriteViews(std::string_view service) {
  return WriteViewsOf(SafeFileName(service), service);
}

Status FileSink::WriteViewsOf(const std::string& dir_name, std::string_view title) {
  const fs::path dir = fs::path(config_.out_dir) / dir_name;
  const std::string base = dir.string();
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > kSuffix.size() && name.ends_with(kSuffix) && name[0] != '.') {
      files.push_back(e.path().string());
    }
  }
  if (ec) return InternalError("list {}: {}", dir.string(), ec.message());
  if (files.empty()) {
    // Every window of the service is gone (retention): so are its views and its directory.
    std::error_code rec;
    fs::remove(base + ".folded", rec);
    fs::remove(base + ".html", rec);
    fs::remove(dir, rec);  // only when empty
    return OkStatus();
  }
  std::sort(files.begin(), files.end());
  if (config_.view_windows > 0 && files.size() > static_cast<size_t>(config_.view_windows)) {
    files.erase(files.begin(), files.end() - config_.view_windows);
  }
  std::vector<profile::FoldedStack> all;
  for (const std::string& f : files) {
    FS_ASSIGN_OR_RETURN(std::string bytes, ReadFile(f));
    Result<pp::Profile> p = profile::DecodePprof(bytes);
    if (!p.ok()) {
      log::Warn("file sink: skipping unreadable window file", {{"path", f}, {"error", p.status()}});
      continue;
    }
    FS_ASSIGN_OR_RETURN(std::vector<profile::FoldedStack> stacks, profile::Fold(*p));
    // Off-CPU views weigh stacks by time blocked, in microseconds, not by events.
    const int64_t def = p->default_sample_type();
    if (def > 0 && def < p->string_table_size() &&
        p->string_table(static_cast<int>(def)) ==
            profile::NamesOf(v1::PROFILE_TYPE_OFF_CPU).sample_type) {
      for (profile::FoldedStack& st : stacks) st.count = (st.nanos + 500) / 1000;
    }
    all.insert(all.end(), std::make_move_iterator(stacks.begin()),
               std::make_move_iterator(stacks.end()));
  }
  FS_RETURN_IF_ERROR(WriteFileAtomic(base + ".folded", profile::FoldedText(all)));
  return WriteFileAtomic(base + ".html", RenderFlameGraphPage(title, all, config_.page_template));
}

}  // namespace flamestream::sinks
