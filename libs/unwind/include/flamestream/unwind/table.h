// Compact unwind tables (bpf/unwind.h) built from one ELF file's call frame information, for the
// agent's BPF unwinder to walk user stacks without frame pointers.
//
//   BuildStats stats;
//   FS_ASSIGN_OR_RETURN(UnwindTable table,
//                       BuildTable("/proc/1234/map_files/7f00-7f10", &stats));
//   // table.rows[i] holds for [base + rows[i].pc, base + rows[i + 1].pc), the last up to `end`.
//
// The rows come from `.eh_frame` and from `.debug_frame` for the ranges `.eh_frame` does not
// cover. elfutils' libdw runs the CFI programs (dwarf_cfi_addrframe, looking FDEs up through
// `.eh_frame_hdr`'s sorted table); this library lists and vets the FDEs first (so corrupt CFI
// cannot make libdw allocate gigabytes), checks the header's table against them, and maps each
// row's rules onto the few the BPF side can follow (see bpf/unwind.h):
//
//   CFA = rsp + N                  -> FS_CFA_RSP          CFA = rbp + N -> FS_CFA_RBP
//   the .plt CFA expression        -> FS_CFA_PLT (cfa_offset = the rip & 15 threshold)
//   a signal frame (CIE "S")       -> FS_CFA_SIGNAL       return address undefined -> FS_CFA_END
//   return address not at CFA - 8, another CFA register or expression, rbp not "same" or
//   "at CFA + N"                   -> FS_CFA_UNSUPPORTED (counted in BuildStats::unsupported)
//   no FDE                         -> FS_CFA_NONE
//
// Corrupt or truncated CFI never crashes the builder: what parsed is kept, the rest of the file
// becomes FS_CFA_NONE, and BuildStats::errors counts what was dropped. Only x86-64 ELF files are
// supported (Unimplemented otherwise). Rows are clipped to the executable PT_LOAD segments, so a
// corrupt address range cannot inflate a table.
#pragma once

#include <linux/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "flamestream/common/status.h"
#include "unwind.h"  // bpf/unwind.h: struct fs_unwind_row, enum fs_cfa_kind, enum fs_rbp_kind

namespace flamestream::unwind {

// An executable PT_LOAD segment: where file bytes [offset, offset + filesz) sit in the ELF's
// address space. The agent maps a process's runtime addresses to table pcs through these.
struct CodeSegment {
  uint64_t vaddr = 0;
  uint64_t offset = 0;
  uint64_t filesz = 0;
};

struct UnwindTable {
  std::string build_id;                    // lower-case hex GNU build id ("" if the file has none)
  std::vector<CodeSegment> code_segments;  // executable PT_LOADs, in program-header order
  uint64_t base = 0;  // ELF vaddr that row.pc is relative to (the lowest covered address)
  uint64_t end = 0;   // one past the highest covered vaddr
  // Sorted by pc, strictly increasing; consecutive rows never have identical rules.
  std::vector<fs_unwind_row> rows;

  // Bytes the rows take in a BPF map.
  [[nodiscard]] uint64_t bytes() const { return rows.size() * sizeof(fs_unwind_row); }
  // The row in force at ELF vaddr `vaddr`, or nullptr when it is outside [base, end).
  [[nodiscard]] const fs_unwind_row* Find(uint64_t vaddr) const;
  // For a mapping of this file at runtime address `map_start` from file offset `map_offset`
  // (a /proc/<pid>/maps line): the value to subtract from a runtime address to get a row pc
  // (modulo 2^64). NotFound when no executable segment holds that file offset.
  [[nodiscard]] Result<uint64_t> Shift(uint64_t map_start, uint64_t map_offset) const;
};

// UnwindTable::Shift for a table of which only the segments and base were kept.
[[nodiscard]] Result<uint64_t> RowPcShift(const std::vector<CodeSegment>& segments, uint64_t base,
                                          uint64_t map_start, uint64_t map_offset);

// Why rows were FS_CFA_UNSUPPORTED (each row counts once, under the first rule that failed).
struct UnsupportedCounts {
  uint64_t cfa_register = 0;    // CFA = another register + N (r10/r11 after stack realignment)
  uint64_t cfa_expression = 0;  // a CFA expression other than the .plt one (e.g. DRAP's deref)
  uint64_t cfa_undefined = 0;   // no CFA rule
  uint64_t cfa_offset = 0;      // CFA offset does not fit int32
  uint64_t ra_rule = 0;         // return address not saved at CFA - 8
  uint64_t rbp_rule = 0;        // rbp in a register, an expression, a value rule, or off int16
};

struct BuildStats {
  uint64_t fdes = 0;  // FDEs enumerated (.eh_frame and .debug_frame)
  uint64_t rows = 0;  // rows in the table (after merging)
  // Rows of each kind in the table (after merging).
  uint64_t unsupported_rows = 0;
  uint64_t plt_rows = 0;
  uint64_t signal_rows = 0;
  uint64_t end_rows = 0;
  // CFI rows (before merging) that mapped to FS_CFA_UNSUPPORTED, by reason.
  UnsupportedCounts unsupported;
  // Things dropped: unreadable sections, FDEs libdw could not evaluate, ranges outside every
  // executable segment. The table is still usable; the dropped ranges are FS_CFA_NONE.
  uint64_t errors = 0;
  std::string first_error;
  bool from_debug_frame = false;  // some rows came from .debug_frame
};

// Builds the table of the ELF file at `path` (a /proc/<pid>/map_files/... or /proc/<pid>/root/...
// path works). `stats` may be null. Errors: NotFound/PermissionDenied (open), InvalidArgument
// (not ELF, or more than 4 GiB of code for 32-bit pcs), Unimplemented (not x86-64), DataLoss
// (ELF headers unreadable). A file without any CFI yields an empty table, not an error.
[[nodiscard]] Result<UnwindTable> BuildTable(const std::string& path, BuildStats* stats);

// The same from an ELF image in memory (tests, the fuzz harness). The image is copied.
[[nodiscard]] Result<UnwindTable> BuildTableFromImage(std::string_view image, BuildStats* stats);

}  // namespace flamestream::unwind
