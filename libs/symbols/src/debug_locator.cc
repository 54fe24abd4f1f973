#include "flamestream/symbols/debug_locator.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "flamestream/common/strings.h"
#include "flamestream/log/log.h"
#include "debuginfod_fetcher.h"

namespace flamestream::symbols {
namespace {

namespace fs = std::filesystem;

bool Exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string JoinPath(std::string_view dir, std::string_view rest) {
  std::string out(dir);
  while (!out.empty() && out.back() == '/') {
    out.pop_back();
  }
  if (rest.empty() || rest.front() != '/') {
    out.push_back('/');
  }
  out.append(rest);
  return out;
}

}  // namespace

bool IsPendingDownload(const Status& status) {
  return status.code() == StatusCode::kUnavailable &&
         std::string_view(status.message()).starts_with(kDownloadPending);
}

DebugLocator::DebugLocator(LocatorConfig config) : config_(std::move(config)) {
  if (config_.debuginfod) {
    debuginfod_ = DebuginfodFetcher::CreateFromEnv(
        {.concurrency = config_.debuginfod_concurrency,
         .max_size = config_.debuginfod_max_size,
         .timeout = config_.debuginfod_timeout,
         .max_pending = config_.debuginfod_max_pending});
  }
  // Longest prefix first, so "/app/lib=" wins over "/app=".
  std::stable_sort(config_.path_mappings.begin(), config_.path_mappings.end(),
                   [](const std::string& a, const std::string& b) {
                     return a.find('=') > b.find('=');
                   });
}

DebugLocator::~DebugLocator() = default;

uint64_t DebugLocator::DownloadGeneration() const {
  return debuginfod_ != nullptr ? debuginfod_->generation() : 0;
}

bool DebugLocator::WaitForDownloads(uint64_t generation,
                                    std::chrono::steady_clock::time_point deadline) {
  return debuginfod_ != nullptr && debuginfod_->WaitForProgress(generation, deadline);
}

DebuginfodStats DebugLocator::debuginfod_stats() const {
  return debuginfod_ != nullptr ? debuginfod_->stats() : DebuginfodStats{};
}

void DebugLocator::AddBuildIdPath(std::string build_id, std::string path) {
  build_id_paths_[std::move(build_id)] = std::move(path);
}

std::vector<std::string> DebugLocator::BinaryCandidates(std::string_view build_id,
                                                        std::string_view path_hint) const {
  std::vector<std::string> out;
  std::vector<std::string_view> hints;
  if (auto it = build_id_paths_.find(build_id); !build_id.empty() && it != build_id_paths_.end()) {
    hints.push_back(it->second);
  }
  if (!path_hint.empty()) {
    hints.push_back(path_hint);
  }
  for (std::string_view hint : hints) {
    for (const std::string& mapping : config_.path_mappings) {
      size_t eq = mapping.find('=');
      if (eq == std::string::npos) {
        continue;
      }
      std::string_view from(mapping.data(), eq);
      if (hint.substr(0, from.size()) == from) {
        out.push_back(mapping.substr(eq + 1) + std::string(hint.substr(from.size())));
        break;
      }
    }
    for (const std::string& root : config_.sysroots) {
      out.push_back(JoinPath(root, hint));
    }
    if (config_.use_host_paths) {
      out.emplace_back(hint);
    }
  }
  return out;
}

std::optional<ElfInfo> DebugLocator::FindInBuildIdDirs(std::string_view build_id) const {
  if (build_id.size() < 3) {
    return std::nullopt;
  }
  for (const std::string& dir : config_.debug_dirs) {
    std::string path = fmt::format("{}/.build-id/{}/{}.debug", dir, build_id.substr(0, 2),
                                   build_id.substr(2));
    if (!Exists(path)) {
      continue;
    }
    auto info = ReadElfInfo(path);
    if (!info.ok()) {
      log::Warn("unreadable build-id debug file", {{"path", path}, {"error", info.error()}});
      continue;
    }
    if (info->build_id == build_id && (info->has_dwarf || info->has_symtab)) {
      return std::move(info).value();
    }
  }
  return std::nullopt;
}

std::optional<ElfInfo> DebugLocator::FindByDebugLink(const ElfInfo& binary) const {
  if (!binary.debug_link) {
    return std::nullopt;
  }
  const DebugLink& link = *binary.debug_link;
  std::string dir = fs::path(binary.path).parent_path().string();
  std::vector<std::string> candidates = {JoinPath(dir, link.name),
                                         JoinPath(JoinPath(dir, ".debug"), link.name)};
  std::string abs_dir = fs::absolute(fs::path(dir)).lexically_normal().string();
  for (const std::string& debug_dir : config_.debug_dirs) {
    candidates.push_back(JoinPath(JoinPath(debug_dir, abs_dir), link.name));
  }
  for (const std::string& path : candidates) {
    if (path == binary.path || !Exists(path)) {
      continue;
    }
    auto crc = FileCrc32(path);
    if (!crc.ok() || *crc != link.crc) {
      log::Debug("debuglink candidate skipped: CRC mismatch", {{"path", path}});
      continue;
    }
    auto info = ReadElfInfo(path);
    if (info.ok() && (info->has_dwarf || info->has_symtab)) {
      return std::move(info).value();
    }
  }
  return std::nullopt;
}

Result<DebugFiles> DebugLocator::LocateSeparate(std::string_view build_id,
                                                std::optional<ElfInfo> binary) {
  DebugFiles files;
  if (binary && binary->has_dwarf) {
    files.debug = *binary;
    files.code = std::move(binary);
    files.source = "binary";
    return files;
  }
  if (auto found = FindInBuildIdDirs(build_id)) {
    files.debug = std::move(*found);
    files.source = "build-id-dir";
  } else if (binary) {
    if (auto linked = FindByDebugLink(*binary)) {
      files.debug = std::move(*linked);
      files.source = "debuglink";
    }
  }
  Status debuginfod_error;  // why debuginfod had nothing, when it was asked
  if (files.source.empty() && debuginfod_ != nullptr && !build_id.empty()) {
    using Answer = DebuginfodFetcher::Answer;
    Answer answer = debuginfod_->Poll(build_id, DebuginfodFetcher::Kind::kDebugInfo);
    if (answer.state == Answer::kPending) {
      // The executable (below) is asked for only once the debug file is known to need it: most
      // unknown build ids are unknown to debuginfod too, and would cost two requests.
      return Unavailable("{} for build id {}", kDownloadPending, build_id);
    }
    if (answer.state == Answer::kFound) {
      FS_ASSIGN_OR_RETURN(files.debug, ReadElfInfo(answer.path));
      files.source = "debuginfod";
    } else {
      debuginfod_error = std::move(answer.error);
    }
  }
  if (files.source.empty()) {
    if (!binary || !(binary->has_symtab || binary->has_dynsym)) {
      if (!debuginfod_error.ok() && debuginfod_error.code() != StatusCode::kNotFound) {
        // Too large, too slow or unreachable: not "found nowhere" (which replicas share), but
        // negatively cached here like it.
        return Status(debuginfod_error.code(),
                      fmt::format("no debug info or symbols for build id {} (path {}): {}",
                                  build_id, binary ? binary->path : "-",
                                  debuginfod_error.message()));
      }
      return NotFound("no debug info or symbols for build id {} (path {})",
                      build_id.empty() ? "-" : build_id, binary ? binary->path : "-");
    }
    files.debug = *binary;
    files.source = "symtab";
  }
  if (binary) {
    files.code = std::move(binary);
  } else if (files.debug.segments_have_file_data) {
    files.code = files.debug;
  } else if (debuginfod_ != nullptr && !build_id.empty()) {
    // Only a separate debug file: its PT_LOAD headers lost their file offsets, so fetch the
    // executable too, for the offset -> address mapping.
    using Answer = DebuginfodFetcher::Answer;
    Answer answer = debuginfod_->Poll(build_id, DebuginfodFetcher::Kind::kExecutable);
    if (answer.state == Answer::kPending) {
      return Unavailable("{} for build id {} (executable)", kDownloadPending, build_id);
    }
    if (answer.state == Answer::kFound) {
      auto exe = ReadElfInfo(answer.path);
      if (exe.ok() && exe->build_id == build_id) {
        files.code = std::move(exe).value();
      }
    } else {
      log::Debug("no executable from debuginfod: file offsets cannot be mapped",
                 {{"build_id", build_id}, {"error", answer.error}});
    }
  }
  return files;
}

Result<DebugFiles> DebugLocator::Locate(std::string_view build_id, std::string_view path_hint) {
  std::optional<ElfInfo> binary;
  Status first_error;
  for (const std::string& candidate : BinaryCandidates(build_id, path_hint)) {
    if (!Exists(candidate)) {
      continue;
    }
    auto info = ReadElfInfo(candidate);
    if (!info.ok()) {
      if (first_error.ok()) {
        first_error = info.error();
      }
      continue;
    }
    if (!build_id.empty() && info->build_id != build_id) {
      continue;  // another version of the file than the one sampled
    }
    binary = std::move(info).value();
    break;
  }
  auto files = LocateSeparate(build_id, std::move(binary));
  if (!files.ok() && !first_error.ok()) {
    // A corrupt binary explains the miss better than "not found".
    return first_error;
  }
  return files;
}

Result<DebugFiles> DebugLocator::LocateForPath(const std::string& path) {
  FS_ASSIGN_OR_RETURN(ElfInfo binary, ReadElfInfo(path));
  std::string build_id = binary.build_id;
  return LocateSeparate(build_id, std::move(binary));
}

}  // namespace flamestream::symbols
