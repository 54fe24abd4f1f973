// Helpers for libs/unwind's tests: symbols and sections of an ELF file (libelf), readelf's
// interpretation of its CFI (`readelf --debug-dump=frames-interp`), running a command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flamestream::unwind::testing {

struct Range {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t offset = 0;  // sections: sh_offset
};

// A symbol's [st_value, st_value + st_size) from .symtab or .dynsym (versioned names match
// without their "@..." suffix).
std::optional<Range> FindSymbol(const std::string& path, const std::string& name);
// A section's [sh_addr, sh_addr + sh_size).
std::optional<Range> FindSection(const std::string& path, const std::string& name);

// One row of readelf's table: the LOC and the CFA, ra and rbp columns as printed
// ("rsp+8", "exp", "c-8", "u"; rbp "" when the FDE has no rbp column).
struct ReadelfRow {
  uint64_t loc = 0;
  std::string cfa;
  std::string ra;
  std::string rbp;
};
struct ReadelfFde {
  uint64_t start = 0;
  uint64_t end = 0;
  std::vector<ReadelfRow> rows;  // the CIE's initial row when the FDE has no instructions
};
// Every FDE of `section` (".eh_frame" or ".debug_frame") of the file, as readelf reads it.
std::vector<ReadelfFde> ReadelfFrames(const std::string& path, const std::string& section);

// stdout of `sh -c command`.
std::string RunCommand(const std::string& command);

// The libc this process runs with and its load bias (runtime address - ELF vaddr). Looked up by
// soname, not through a libc symbol: under ASan, sigaction and malloc resolve to libasan.
struct LoadedLibc {
  std::string path;
  uintptr_t bias = 0;
};
LoadedLibc FindLoadedLibc();

}  // namespace flamestream::unwind::testing
