// libs/unwind BuildTableFromImage: any bytes as an ELF file, through libelf and libdw's CFI
// evaluation (system libraries, not instrumented; the harness checks our code around them:
// .eh_frame_hdr parsing, the .eh_frame/.debug_frame entry walk with its pointer decoding, the
// row walk, clipping and merging). Invariants: rows strictly increasing and inside
// [0, end - base), kinds valid, no two equal neighbours, stats agree with the rows.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "flamestream/unwind/table.h"
#include "fuzz_check.h"

namespace unwind = flamestream::unwind;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  unwind::BuildStats stats;
  flamestream::Result<unwind::UnwindTable> table = unwind::BuildTableFromImage(
      std::string_view(reinterpret_cast<const char*>(data), size), &stats);
  if (!table.ok()) return 0;
  const auto& rows = table->rows;
  FS_FUZZ_CHECK(stats.rows == rows.size(), "stats.rows %llu, %zu rows",
                static_cast<unsigned long long>(stats.rows), rows.size());
  if (rows.empty()) {
    FS_FUZZ_CHECK(table->base == table->end, "empty table with a range");
    return 0;
  }
  FS_FUZZ_CHECK(rows.front().pc == 0, "first row at pc %u", rows.front().pc);
  FS_FUZZ_CHECK(table->end > table->base && table->end - table->base <= UINT32_MAX, "bad range");
  uint64_t unsupported = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const fs_unwind_row& r = rows[i];
    FS_FUZZ_CHECK(r.cfa_kind <= FS_CFA_UNSUPPORTED, "kind %u", r.cfa_kind);
    FS_FUZZ_CHECK(r.rbp_kind <= FS_RBP_AT_CFA, "rbp kind %u", r.rbp_kind);
    FS_FUZZ_CHECK(r.pc < table->end - table->base, "row %zu past the end", i);
    FS_FUZZ_CHECK(table->Find(table->base + r.pc) == &r, "Find misses row %zu", i);
    unsupported += r.cfa_kind == FS_CFA_UNSUPPORTED;
    if (i > 0) {
      const fs_unwind_row& p = rows[i - 1];
      FS_FUZZ_CHECK(p.pc < r.pc, "rows %zu, %zu not increasing", i - 1, i);
      FS_FUZZ_CHECK(!(p.cfa_kind == r.cfa_kind && p.cfa_offset == r.cfa_offset &&
                      p.rbp_kind == r.rbp_kind && p.rbp_offset == r.rbp_offset),
                    "rows %zu, %zu equal", i - 1, i);
    }
  }
  FS_FUZZ_CHECK(unsupported == stats.unsupported_rows, "unsupported count");
  FS_FUZZ_CHECK(table->Find(table->end) == nullptr, "Find past the end");
  return 0;
}
