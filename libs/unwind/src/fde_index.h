// Lists the FDEs of a CFI section, so the table builder knows where to start asking libdw for
// rows (libdw evaluates FDEs but has no "list them" call). We walk the entries with
// dwarf_next_cfi, decode each FDE's initial location ourselves (the CIE's 'R' pointer encoding)
// and vet its instructions (cfa_vet.h); `.eh_frame_hdr`'s sorted table is read so the builder
// can check it against the walk before libdw trusts it. Every read is bounds-checked; malformed
// input is logged in an ErrorLog and skipped.
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

// One entry of `.eh_frame_hdr`'s binary-search table.
struct HdrEntry {
  uint64_t start = 0;      // the FDE's initial location
  uint64_t fde_vaddr = 0;  // where the FDE is
};
// The search table of `.eh_frame_hdr`, in its order. nullopt (with a logged error) when the
// header is malformed or its table is not sorted; nullopt without an error when it has none.
std::optional<std::vector<HdrEntry>> EhFrameHdrTable(const SectionBytes& hdr, ErrorLog* log);

// One FDE of a CFI section.
struct FdeInfo {
  uint64_t start = 0;   // initial location
  uint64_t end = 0;     // initial location + address range
  uint64_t offset = 0;  // of the FDE in its section
  // Its CIE's and its own instructions passed CfaInstructionsSafe (cfa_vet.h): only then may
  // libdw run them.
  bool safe = false;
};

// Every FDE of a `.eh_frame` (eh_frame = true) or `.debug_frame` section, walked entry by
// entry with dwarf_next_cfi, sorted by start. `data` is the section's Elf_Data, `vaddr` its
// sh_addr. Unreadable and unsafe entries are logged. After an entry whose length is
// unreadable the walk resumes at the next of `resync` (sorted section offsets of FDEs, from
// `.eh_frame_hdr`), so damage in the middle of the section loses only what it covers.
std::vector<FdeInfo> IndexFdes(const unsigned char* e_ident, Elf_Data* data, bool eh_frame,
                               uint64_t vaddr, const std::vector<uint64_t>& resync, ErrorLog* log);

}  // namespace flamestream::unwind
