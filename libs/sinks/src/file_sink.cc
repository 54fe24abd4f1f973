#include "flamestream/sinks/file_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"

namespace flamestream::sinks {
namespace internal {
extern const std::string_view kFlameGraphTemplate;  // generated from assets/flamegraph
}  // namespace internal

namespace fs = std::filesystem;
namespace pp = ::perftools::profiles;

namespace {

constexpr std::string_view kSuffix = ".pb.gz";

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
      return ErrnoError(errno, fmt::format("write {}", path));
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
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
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
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string SafeFileName(std::string_view service) {
  std::string out;
  for (const char c : service) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out == "." || out == "..") out = "_" + out;
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view data) {
  const fs::path target(path);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) return InternalError("mkdir {}: {}", target.parent_path().string(), ec.message());
  const std::string tmp =
      (target.parent_path() / fmt::format(".{}.tmp.{}", target.filename().string(), ::getpid())).string();
  {
    common::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return ErrnoError(errno, fmt::format("create {}", tmp));
    Status st = WriteAll(fd.get(), data, tmp);
    if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoError(errno, fmt::format("fsync {}", tmp));
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(err, fmt::format("rename {} -> {}", tmp, path));
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
    for (const std::string& f : key.second) rows += fmt::format(",{}", intern(names, name_list, f, 0));
    rows += "]";
  }
  std::string json = "{\"title\":";
  JsonString(json, title);
  json += ",\"unit\":\"samples\",\"names\":[";
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
  if (at != std::string::npos) page.replace(at, std::string_view("__FLAMESTREAM_DATA__").size(), json);
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
  const std::string path = WindowPath(window.series[series].key.service, window.start_ns);
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
  for (const std::string& service : window.Services()) {
    const std::string path = WindowPath(service, window.start_ns);
    if (fs::exists(path)) {
      Result<std::string> bytes = ReadFile(path);
      if (bytes.ok()) {
        Result<pp::Profile> existing = profile::DecodePprof(*bytes);
        if (existing.ok() && profile::EpochOf(*existing) > window.symbol_epoch) {
          log::Info("file sink: newer symbol epoch already written, keeping it",
                    {{"path", path}, {"epoch", static_cast<unsigned long long>(window.symbol_epoch)}});
          continue;
        }
      }
    }
    perftools::profiles::Profile p = profile::EncodePprof(
        window, window.SeriesOf(service), {.labels = labels(), .batch_comments = true});
    FS_ASSIGN_OR_RETURN(std::string gz, profile::GzipPprof(p));
    FS_RETURN_IF_ERROR(WriteFileAtomic(path, gz));
    if (config_.views) FS_RETURN_IF_ERROR(WriteViews(service));
  }
  return OkStatus();
}

Status FileSink::WriteViews(std::string_view service) {
  const fs::path dir = fs::path(config_.out_dir) / SafeFileName(service);
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > kSuffix.size() && name.ends_with(kSuffix) && name[0] != '.') {
      files.push_back(e.path().string());
    }
  }
  if (ec) return InternalError("list {}: {}", dir.string(), ec.message());
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
    all.insert(all.end(), std::make_move_iterator(stacks.begin()),
               std::make_move_iterator(stacks.end()));
  }
  const std::string base = (fs::path(config_.out_dir) / SafeFileName(service)).string();
  FS_RETURN_IF_ERROR(WriteFileAtomic(base + ".folded", profile::FoldedText(all)));
  return WriteFileAtomic(base + ".html", RenderFlameGraphPage(service, all, config_.page_template));
}

}  // namespace flamestream::sinks
