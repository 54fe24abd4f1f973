// A resolved code address: the chain of source frames at that address, innermost first.
//
//   LocationPtr loc = ...;            // from Symbolizer::ResolveBatch
//   for (const SourceFrame& f : loc->frames) {
//     fmt::print("{} {}:{}:{}\n", f.function, f.file, f.line, f.column);
//   }
//   // leaf (inlined)      /src/a.cc:12:7
//   // caller (its home)   /src/a.cc:40:3
//
// Locations are immutable and shared (`std::shared_ptr<const Location>`), so a cache hit hands
// out a reference count, not a copy of the strings.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flamestream::symbols {

// What llvm-symbolizer prints for an unknown function or file.
inline constexpr const char* kUnknown = "??";

struct SourceFrame {
  std::string function;     // demangled ("ns::Shape<int>::Area() const"), "??" when unknown
  std::string system_name;  // the mangled linkage name ("_ZNK2ns5ShapeIiE4AreaEv")
  std::string file;         // absolute source path as DWARF names it, "??" when unknown
  uint32_t line = 0;        // 0 when unknown
  uint32_t column = 0;      // 0 when unknown

  friend bool operator==(const SourceFrame&, const SourceFrame&) = default;
};

struct Location {
  // False when neither DWARF nor a symbol table names the function (or the build id's debug
  // info was not found): then `frames` is empty and `display_name` reads "libfoo.so+0x1a2b".
  bool resolved = false;
  std::vector<SourceFrame> frames;  // innermost (inlined callee) first, the real function last
  std::string display_name;

  // Approximate heap footprint, for byte-bounded caches.
  [[nodiscard]] size_t ByteSize() const;
};

using LocationPtr = std::shared_ptr<const Location>;

// "libfoo.so+0x1a2b": the basename of `path` (or the build id when there is no path).
std::string UnresolvedName(std::string_view path, std::string_view build_id, uint64_t offset);

// Compact binary encoding for shared caches (Redis): varints and length-prefixed strings.
std::string EncodeLocation(const Location& loc);
bool DecodeLocation(std::string_view bytes, Location* out);

}  // namespace flamestream::symbols
