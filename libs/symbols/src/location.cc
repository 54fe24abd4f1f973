#include "flamestream/symbols/location.h"

#include <fmt/format.h>

#include <string_view>

namespace flamestream::symbols {
namespace {

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void PutString(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

bool GetVarint(std::string_view& in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

bool GetString(std::string_view& in, std::string* s) {
  uint64_t n = 0;
  if (!GetVarint(in, &n) || n > in.size()) {
    return false;
  }
  s->assign(in.data(), n);
  in.remove_prefix(n);
  return true;
}

// Bumped when the layout changes, so old Redis values read as misses, not garbage.
constexpr uint64_t kEncodingVersion = 1;

}  // namespace

size_t Location::ByteSize() const {
  size_t n = sizeof(Location) + display_name.capacity() + frames.capacity() * sizeof(SourceFrame);
  for (const SourceFrame& f : frames) {
    n += f.function.capacity() + f.system_name.capacity() + f.file.capacity();
  }
  return n;
}

std::string UnresolvedName(std::string_view path, std::string_view build_id, uint64_t offset) {
  std::string_view base = path;
  if (size_t slash = base.rfind('/'); slash != std::string_view::npos) {
    base.remove_prefix(slash + 1);
  }
  if (base.empty()) {
    base = build_id.empty() ? std::string_view("??") : build_id;
  }
  return fmt::format("{}+{:#x}", base, offset);
}

std::string EncodeLocation(const Location& loc) {
  std::string out;
  PutVarint(out, kEncodingVersion);
  PutVarint(out, loc.resolved ? 1 : 0);
  PutString(out, loc.display_name);
  PutVarint(out, loc.frames.size());
  for (const SourceFrame& f : loc.frames) {
    PutString(out, f.function);
    // The system name is usually the function's mangled form; store it only when it differs.
    PutString(out, f.system_name == f.function ? std::string_view() : f.system_name);
    PutString(out, f.file);
    PutVarint(out, f.line);
    PutVarint(out, f.column);
  }
  return out;
}

bool DecodeLocation(std::string_view in, Location* out) {
  uint64_t version = 0;
  uint64_t resolved = 0;
  uint64_t count = 0;
  if (!GetVarint(in, &version) || version != kEncodingVersion || !GetVarint(in, &resolved) ||
      !GetString(in, &out->display_name) || !GetVarint(in, &count) || count > in.size()) {
    return false;
  }
  out->resolved = resolved != 0;
  out->frames.assign(count, SourceFrame{});
  for (SourceFrame& f : out->frames) {
    uint64_t line = 0;
    uint64_t column = 0;
    if (!GetString(in, &f.function) || !GetString(in, &f.system_name) ||
        !GetString(in, &f.file) || !GetVarint(in, &line) || !GetVarint(in, &column)) {
      return false;
    }
    if (f.system_name.empty()) {
      f.system_name = f.function;
    }
    f.line = static_cast<uint32_t>(line);
    f.column = static_cast<uint32_t>(column);
  }
  return in.empty();
}

}  // namespace flamestream::symbols
