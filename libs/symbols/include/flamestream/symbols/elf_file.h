// What the symbolizer needs to know about an ELF file before it opens its debug info: the GNU
// build id, the PT_LOAD segments (to turn a file offset into a virtual address), whether it
// carries DWARF or a symbol table, and its `.gnu_debuglink`.
//
//   FS_ASSIGN_OR_RETURN(ElfInfo info, ReadElfInfo("/usr/bin/bash"));
//   FS_ASSIGN_OR_RETURN(uint64_t vaddr, info.FileOffsetToVaddr(0x2f1a0));
//
// Parsing goes through libelf, which bounds-checks every header against the file size, so a
// truncated or garbage file yields an error instead of a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flamestream/common/status.h"

namespace flamestream::symbols {

struct LoadSegment {
  uint64_t offset = 0;  // p_offset
  uint64_t vaddr = 0;   // p_vaddr
  uint64_t filesz = 0;  // p_filesz: bytes backed by the file
  uint64_t memsz = 0;
};

struct DebugLink {
  std::string name;  // file name of the separate debug file
  uint32_t crc = 0;  // CRC-32 of the debug file's contents
};

struct ElfInfo {
  std::string path;
  std::string build_id;  // lower-case hex; empty when the file has no NT_GNU_BUILD_ID note
  std::vector<LoadSegment> segments;
  bool has_dwarf = false;   // a non-empty .debug_info (or .zdebug_info)
  bool has_symtab = false;  // .symtab with entries
  bool has_dynsym = false;
  // False for debug files made by `objcopy --only-keep-debug`: their PT_LOAD headers keep the
  // addresses but not the file offsets (the executable segment has no file bytes), so they
  // cannot map offsets.
  bool segments_have_file_data = false;
  std::optional<DebugLink> debug_link;
  uint64_t file_size = 0;

  // Maps a file offset to a virtual address through the PT_LOAD segment that holds it.
  [[nodiscard]] Result<uint64_t> FileOffsetToVaddr(uint64_t file_offset) const;
};

// Reads the headers of the ELF file at `path`. Errors: NotFound (no such file),
// InvalidArgument (not ELF), DataLoss (truncated or malformed headers).
[[nodiscard]] Result<ElfInfo> ReadElfInfo(const std::string& path);

// CRC-32 of a whole file, as `.gnu_debuglink` records it (the zlib polynomial).
[[nodiscard]] Result<uint32_t> FileCrc32(const std::string& path);

}  // namespace flamestream::symbols
