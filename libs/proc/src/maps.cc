#include "flamestream/proc/maps.h"

#include <sys/stat.h>

#include <algorithm>

#include "flamestream/common/strings.h"
#include "flamestream/proc/process.h"

namespace flamestream::proc {
namespace {

// Splits off the next space-delimited field; `s` keeps the rest with leading spaces removed.
std::string_view NextField(std::string_view& s) {
  const size_t start = s.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    s = {};
    return {};
  }
  s.remove_prefix(start);
  const size_t end = s.find(' ');
  std::string_view field = s.substr(0, end);
  s.remove_prefix(end == std::string_view::npos ? s.size() : end);
  return field;
}

MappingKind Classify(std::string_view path, uint64_t inode) {
  if (path == "[vdso]") {
    return MappingKind::kVdso;
  }
  if (path == "[vsyscall]") {
    return MappingKind::kVsyscall;
  }
  if (path.empty() || path.front() == '[' || path.starts_with("//anon") ||
      path.starts_with("/memfd:") || path.starts_with("/dev/zero") || path.starts_with("/SYSV")) {
    return MappingKind::kAnonymous;
  }
  if (path.ends_with(" (deleted)")) {
    return MappingKind::kDeleted;
  }
  if (inode == 0) {
    return MappingKind::kAnonymous;  // a path but no file behind it
  }
  return MappingKind::kFile;
}

}  // namespace

std::string_view MappingKindName(MappingKind kind) {
  switch (kind) {
    case MappingKind::kFile:
      return "file";
    case MappingKind::kAnonymous:
      return "anonymous";
    case MappingKind::kJit:
      return "jit";
    case MappingKind::kVdso:
      return "vdso";
    case MappingKind::kVsyscall:
      return "vsyscall";
    case MappingKind::kDeleted:
      return "deleted";
  }
  return "unknown";
}

Result<Mapping> ParseMapsLine(std::string_view line) {
  std::string_view rest = line;
  const std::string_view range = NextField(rest);
  const std::string_view perms = NextField(rest);
  const std::string_view offset = NextField(rest);
  const std::string_view dev = NextField(rest);
  const std::string_view inode = NextField(rest);
  if (inode.empty()) {
    return InvalidArgument("maps line has fewer than 5 fields");
  }
  Mapping m;
  const size_t dash = range.find('-');
  const size_t colon = dev.find(':');
  if (dash == std::string_view::npos || colon == std::string_view::npos || perms.size() != 4) {
    return InvalidArgument("malformed maps line \"{}\"", std::string(line.substr(0, 80)));
  }
  FS_ASSIGN_OR_RETURN(m.start, common::ParseInt<uint64_t>(range.substr(0, dash), 16));
  FS_ASSIGN_OR_RETURN(m.end, common::ParseInt<uint64_t>(range.substr(dash + 1), 16));
  FS_ASSIGN_OR_RETURN(m.offset, common::ParseInt<uint64_t>(offset, 16));
  FS_ASSIGN_OR_RETURN(m.dev_major, common::ParseInt<uint32_t>(dev.substr(0, colon), 16));
  FS_ASSIGN_OR_RETURN(m.dev_minor, common::ParseInt<uint32_t>(dev.substr(colon + 1), 16));
  FS_ASSIGN_OR_RETURN(m.inode, common::ParseInt<uint64_t>(inode, 10));
  if (m.end <= m.start) {
    return InvalidArgument("maps range {:x}-{:x} is empty", m.start, m.end);
  }
  m.readable = perms[0] == 'r';
  m.writable = perms[1] == 'w';
  m.executable = perms[2] == 'x';
  m.shared = perms[3] == 's';
  // The path is the rest of the line after the padding; it may contain spaces.
  m.path = std::string(common::Trim(rest));
  m.kind = Classify(m.path, m.inode);
  return m;
}

ParsedMaps ParseMaps(std::string_view content) {
  ParsedMaps out;
  while (!content.empty()) {
    const size_t nl = content.find('\n');
    std::string_view line = content.substr(0, nl);
    content.remove_prefix(nl == std::string_view::npos ? content.size() : nl + 1);
    if (common::Trim(line).empty()) {
      continue;
    }
    Result<Mapping> m = ParseMapsLine(line);
    if (m.ok()) {
      out.mappings.push_back(std::move(*m));
    } else {
      ++out.malformed_lines;
    }
  }
  std::sort(out.mappings.begin(), out.mappings.end(),
            [](const Mapping& a, const Mapping& b) { return a.start < b.start; });
  return out;
}

MapsCache::MapsCache(MapsCacheOptions options) : options_(std::move(options)) {}

void MapsCache::OnExec(uint32_t pid) {
  if (auto it = processes_.find(pid); it != processes_.end()) {
    it->second.mappings.clear();
    it->second.loaded_at = {};
  }
}

void MapsCache::OnExit(uint32_t pid) { processes_.erase(pid); }

void MapsCache::EvictIfFull() {
  if (processes_.size() < options_.max_processes) {
    return;
  }
  auto oldest = std::min_element(processes_.begin(), processes_.end(), [](auto& a, auto& b) {
    return a.second.last_use < b.second.last_use;
  });
  processes_.erase(oldest);
}

Result<MapsCache::Process*> MapsCache::Load(uint32_t pid, bool force) {
  auto it = processes_.find(pid);
  const auto now = std::chrono::steady_clock::now();
  if (it != processes_.end() && !it->second.mappings.empty()) {
    if (!force || now - it->second.loaded_at < options_.min_reload_interval) {
      it->second.last_use = ++clock_;
      return &it->second;
    }
  }
  const std::string dir = fmt::format("{}/{}", options_.proc_root, pid);
  FS_ASSIGN_OR_RETURN(std::string stat, ReadProcFile(dir + "/stat"));
  FS_ASSIGN_OR_RETURN(uint64_t start_ticks, ParseStatStartTicks(stat));
  FS_ASSIGN_OR_RETURN(std::string maps, ReadProcFile(dir + "/maps", 64 << 20));
  ++stats_.loads;
  if (it == processes_.end()) {
    EvictIfFull();
    it = processes_.emplace(pid, Process{}).first;
  }
  Process& p = it->second;
  if (p.start_ticks != start_ticks) {
    p = Process{};  // a different process behind a recycled pid
    p.start_ticks = start_ticks;
  }
  p.mappings = ParseMaps(maps).mappings;
  p.build_ids.assign(p.mappings.size(), "");
  p.build_id_read.assign(p.mappings.size(), false);
  p.loaded_at = now;
  p.last_use = ++clock_;
  struct stat st {};
  p.has_perf_map = ::stat(fmt::format("/tmp/perf-{}.map", pid).c_str(), &st) == 0;
  if (p.has_perf_map) {
    for (Mapping& m : p.mappings) {
      if (m.kind == MappingKind::kAnonymous && m.executable) {
        m.kind = MappingKind::kJit;
      }
    }
  }
  return &p;
}

std::string MapFilesPath(const std::string& proc_root, uint32_t pid, const Mapping& m) {
  return fmt::format("{}/{}/map_files/{:x}-{:x}", proc_root, pid, m.start, m.end);
}

std::string RootPath(const std::string& proc_root, uint32_t pid, const Mapping& m) {
  return fmt::format("{}/{}/root{}", proc_root, pid, m.path);
}

const std::string& MapsCache::BuildIdFor(uint32_t pid, Process& p, size_t index) {
  if (!p.build_id_read[index]) {
    p.build_id_read[index] = true;
    const Mapping& m = p.mappings[index];
    Result<std::string> id = build_ids_.Get(
        FileKey{.dev_major = m.dev_major, .dev_minor = m.dev_minor, .inode = m.inode},
        {MapFilesPath(options_.proc_root, pid, m), RootPath(options_.proc_root, pid, m)});
    if (id.ok()) {
      p.build_ids[index] = *id;
    } else {
      ++stats_.build_id_failures;
    }
  }
  return p.build_ids[index];
}

Result<std::vector<Mapping>> MapsCache::Mappings(uint32_t pid) {
  FS_ASSIGN_OR_RETURN(Process * p, Load(pid, false));
  return p->mappings;
}

Result<Location> MapsCache::Resolve(uint32_t pid, uint64_t addr) {
  for (bool force : {false, true}) {
    FS_ASSIGN_OR_RETURN(Process * p, Load(pid, force));
    auto it = std::upper_bound(p->mappings.begin(), p->mappings.end(), addr,
                               [](uint64_t a, const Mapping& m) { return a < m.start; });
    if (it == p->mappings.begin() || !std::prev(it)->Contains(addr)) {
      continue;
    }
    const size_t index = static_cast<size_t>(std::prev(it) - p->mappings.begin());
    const Mapping& m = p->mappings[index];
    Location loc;
    loc.kind = m.kind;
    loc.path = m.path;
    loc.mapping_start = m.start;
    loc.mapping_end = m.end;
    loc.mapping_offset = m.offset;
    if (m.kind == MappingKind::kFile || m.kind == MappingKind::kDeleted) {
      loc.file_offset = m.FileOffset(addr);
      loc.build_id = BuildIdFor(pid, *p, index);
    } else if (m.kind == MappingKind::kVdso) {
      loc.file_offset = addr - m.start;  // the vDSO image starts at offset 0
    } else {
      loc.file_offset = addr;
    }
    return loc;
  }
  ++stats_.unknown_addresses;
  return NotFound("address {:#x} is in no mapping of pid {}", addr, pid);
}

}  // namespace flamestream::proc
