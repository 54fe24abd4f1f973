#include "flamestream/pprofutil/stacks.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <unordered_map>

#include "flamestream/pprofutil/profile_io.h"

namespace flamestream::pprofutil {
namespace {

namespace fs = std::filesystem;
using perftools::profiles::Profile;

const std::string& Str(const Profile& p, int64_t index) {
  static const std::string kEmpty;
  if (index <= 0 || index >= p.string_table_size()) {
    return kEmpty;
  }
  return p.string_table(static_cast<int>(index));
}

// Index of the sample type to read, or an error listing the available ones.
Result<int> SampleTypeIndex(const Profile& p, const std::string& wanted) {
  if (p.sample_type_size() == 0) {
    return InvalidArgument("profile has no sample types");
  }
  if (!wanted.empty()) {
    std::vector<std::string> names;
    for (int i = 0; i < p.sample_type_size(); ++i) {
      if (Str(p, p.sample_type(i).type()) == wanted) {
        return i;
      }
      names.push_back(Str(p, p.sample_type(i).type()));
    }
    return InvalidArgument("no sample type '{}' (profile has: {})", wanted,
                           fmt::join(names, ", "));
  }
  if (p.default_sample_type() != 0) {
    for (int i = 0; i < p.sample_type_size(); ++i) {
      if (p.sample_type(i).type() == p.default_sample_type()) {
        return i;
      }
    }
  }
  return p.sample_type_size() - 1;
}

bool HasSuffix(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool IsProfileFile(const fs::path& p) {
  const std::string name = p.filename().string();
  return HasSuffix(name, ".pb.gz") || HasSuffix(name, ".pb") || HasSuffix(name, ".pprof");
}

}  // namespace

FrameNamer::FrameNamer(const Profile& profile) : profile_(profile) {
  locations_.reserve(static_cast<size_t>(profile.location_size()));
  functions_.reserve(static_cast<size_t>(profile.function_size()));
  for (const auto& l : profile.location()) locations_[l.id()] = &l;
  for (const auto& f : profile.function()) functions_[f.id()] = &f;
  for (const auto& m : profile.mapping()) mappings_[m.id()] = &m;
}

const std::string& FrameNamer::Str(int64_t index) const { return pprofutil::Str(profile_, index); }

void FrameNamer::AppendLocation(uint64_t id, std::vector<std::string>& frames) const {
  auto it = locations_.find(id);
  if (it == locations_.end()) {
    frames.push_back(fmt::format("<unknown location {}>", id));
    return;
  }
  const perftools::profiles::Location& loc = *it->second;
  if (loc.line_size() == 0) {
    auto m = mappings_.find(loc.mapping_id());
    if (m != mappings_.end() && !Str(m->second->filename()).empty()) {
      const uint64_t offset = loc.address() - m->second->memory_start() + m->second->file_offset();
      frames.push_back(fmt::format(
          "{}+0x{:x}", fs::path(Str(m->second->filename())).filename().string(), offset));
    } else {
      frames.push_back(fmt::format("0x{:x}", loc.address()));
    }
    return;
  }
  for (const auto& line : loc.line()) {
    auto f = functions_.find(line.function_id());
    std::string name;
    if (f != functions_.end()) {
      name = Str(f->second->name());
      if (name.empty()) name = Str(f->second->system_name());
    }
    if (name.empty()) name = fmt::format("0x{:x}", loc.address());
    frames.push_back(std::move(name));
  }
}

Status FrameNamer::Check(const perftools::profiles::Sample& sample) const {
  for (uint64_t id : sample.location_id()) {
    auto it = locations_.find(id);
    if (it == locations_.end()) return DataLoss("pprof: unknown location {}", id);
    for (const auto& line : it->second->line()) {
      if (!functions_.contains(line.function_id())) {
        return DataLoss("pprof: unknown function {}", line.function_id());
      }
    }
  }
  return OkStatus();
}

std::vector<std::string> FrameNamer::LeafFirst(const perftools::profiles::Sample& sample) const {
  std::vector<std::string> frames;
  frames.reserve(static_cast<size_t>(sample.location_id_size()));
  for (uint64_t id : sample.location_id()) AppendLocation(id, frames);
  return frames;
}

std::vector<std::string> FrameNamer::RootFirst(const perftools::profiles::Sample& sample) const {
  std::vector<std::string> frames = LeafFirst(sample);
  std::reverse(frames.begin(), frames.end());
  return frames;
}

std::vector<std::string> LeafFirstFrames(const Profile& profile,
                                         const perftools::profiles::Sample& sample) {
  return FrameNamer(profile).LeafFirst(sample);
}

Status AddProfile(const Profile& profile, const LoadOptions& options, StackSet& set) {
  FS_ASSIGN_OR_RETURN(int index, SampleTypeIndex(profile, options.sample_type));
  const std::string& type = Str(profile, profile.sample_type(index).type());
  const std::string& unit = Str(profile, profile.sample_type(index).unit());
  if (set.profiles == 0) {
    set.sample_type = type;
    set.unit = unit;
  } else if (type != set.sample_type || unit != set.unit) {
    return InvalidArgument("sample type {}/{} differs from the first profile's {}/{}", type, unit,
                           set.sample_type, set.unit);
  }
  ++set.profiles;

  const FrameNamer names(profile);
  for (const auto& sample : profile.sample()) {
    if (index >= sample.value_size()) continue;
    const int64_t value = sample.value(index);
    if (value == 0) continue;
    if (!options.span_name.empty() || !options.service.empty()) {
      bool span_ok = options.span_name.empty();
      bool service_ok = true;
      for (const auto& label : sample.label()) {
        const std::string& key = Str(profile, label.key());
        if (key == "span_name" && Str(profile, label.str()) == options.span_name) span_ok = true;
        if (key == "service_name" && !options.service.empty() &&
            Str(profile, label.str()) != options.service) {
          service_ok = false;
        }
      }
      if (!span_ok || !service_ok) continue;
    }
    // Values are arbitrary int64 (a corrupt or hostile file): refuse a profile whose values
    // would overflow a sum instead of wrapping (undefined behaviour) into nonsense.
    const uint64_t abs_value =
        value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
    if (abs_value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() - set.magnitude)) {
      return DataLoss("sample values overflow int64 (their magnitudes sum past {})",
                      std::numeric_limits<int64_t>::max());
    }
    set.magnitude += static_cast<int64_t>(abs_value);
    std::vector<std::string> frames = names.RootFirst(sample);
    if (frames.empty()) frames.emplace_back("[no stack]");
    set.stacks[std::move(frames)] += value;
    set.total += value;
  }
  return OkStatus();
}

Result<StackSet> LoadStacks(const std::vector<std::string>& files, const LoadOptions& options) {
  StackSet set;
  for (const std::string& file : files) {
    FS_ASSIGN_OR_RETURN(Profile p, ReadProfile(file));
    Status s = AddProfile(p, options, set);
    if (!s.ok()) return s.WithContext(file);
  }
  return set;
}

Result<std::vector<std::string>> ExpandInputs(const std::vector<std::string>& args,
                                              const std::string& service) {
  std::vector<std::string> files;
  for (const std::string& arg : args) {
    std::error_code ec;
    const fs::file_status st = fs::status(arg, ec);
    if (ec || !fs::exists(st)) {
      return NotFound("{}: no such file or directory", arg);
    }
    if (!fs::is_directory(st)) {
      files.push_back(arg);
      continue;
    }
    fs::path root = arg;
    if (!service.empty()) {
      root /= service;
      if (!fs::is_directory(root, ec)) {
        std::vector<std::string> services;
        for (const auto& e : fs::directory_iterator(arg, ec)) {
          if (e.is_directory()) services.push_back(e.path().filename().string());
        }
        std::sort(services.begin(), services.end());
        return NotFound("{}: no service '{}' (services: {})", arg, service,
                        services.empty() ? "none" : fmt::format("{}", fmt::join(services, ", ")));
      }
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file() && IsProfileFile(it->path())) {
        found.push_back(it->path().string());
      }
    }
    if (ec) {
      return Unavailable("{}: {}", root.string(), ec.message());
    }
    if (found.empty()) {
      return NotFound("{}: no pprof files (*.pb.gz) found", root.string());
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

std::string ToFolded(const StackSet& set) {
  std::string out;
  for (const auto& [frames, value] : set.stacks) {
    out += fmt::format("{} {}\n", fmt::join(frames, ";"), value);
  }
  return out;
}

}  // namespace flamestream::pprofutil
