// Lists the FDEs of a CFI section by their initial location, so the table builder knows where
// to start asking libdw for rows. libdw evaluates FDEs but has no "list them" call: we read the
// sorted table of `.eh_frame_hdr`, or walk the entries with dwarf_next_cfi and decode each FDE's
// initial location ourselves (the CIE's 'R' pointer encoding). Every read is bounds-checked;
// malformed input is logged in an ErrorLog and skipped.
#pragma once

#include <elfutils/libdw.h>
#include <libelf.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace flamestream::unwind {

// Counts what was dropped and keeps the first message (BuildStats::errors / first_error).
struct ErrorLog {
  uint64_t count = 0;
  std::string first;
  void Add(std::string message) {
    if (count++ == 0) first = std::move(message);
  }
};

// A section's bytes and the vaddr they are loaded at (pc-relative pointers need it).
struct SectionBytes {
  std::span<const uint8_t> bytes;
  uint64_t vaddr = 0;
};

// A DW_EH_PE-encoded pointer at `pos` of `section`: its value and the position after it.
// nullopt when the encoding is unknown (or indirect) or the bytes run out. `datarel_base` is
// the base of DW_EH_PE_datarel (the `.eh_frame_hdr` address in that section).
struct DecodedPointer {
  uint64_t value = 0;
  size_t next = 0;
};
std::optional<DecodedPointer> DecodeEhPointer(const SectionBytes& section, size_t pos,
                                              uint8_t encoding, uint64_t datarel_base);

// Initial locations from `.eh_frame_hdr`'s binary-search table (sorted, duplicates removed).
// nullopt (with a logged error) when the header is malformed or its table is not sorted;
// nullopt without an error when it has no table.
std::optional<std::vector<uint64_t>> EhFrameHdrStarts(const SectionBytes& hdr, ErrorLog* log);

// Initial locations of the FDEs (with a non-empty range) of a `.eh_frame` (eh_frame = true) or
// `.debug_frame` section, walked entry by entry; sorted, duplicates removed.
// `data` is the section's Elf_Data (dwarf_next_cfi reads it), `vaddr` its sh_addr.
std::vector<uint64_t> ScanFdeStarts(const unsigned char* e_ident, Elf_Data* data, bool eh_frame,
                                    uint64_t vaddr, ErrorLog* log);

}  // namespace flamestream::unwind
