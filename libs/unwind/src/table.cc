#include "flamestream/unwind/table.h"

#include <fcntl.h>
#include <gelf.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

#include "fde_index.h"
#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/proc/elf_notes.h"
#include "handles.h"
#include "intervals.h"
#include "rules.h"

namespace flamestream::unwind {
namespace {

// A bound on dwarf_cfi_addrframe calls per file: every call yields a row of at least one byte,
// so only corrupt CFI gets near it (libxul, the largest Debian object, has ~2.5M rows).
constexpr uint64_t kMaxRows = uint64_t{1} << 25;

// libelf wants its version negotiated once per process before any elf_begin().
void InitLibelfOnce() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

std::string ElfErr() {
  const char* msg = elf_errmsg(-1);
  return msg != nullptr ? msg : "unknown libelf error";
}

const unsigned char* Ident(Elf* elf) {
  return reinterpret_cast<const unsigned char*>(elf_getident(elf, nullptr));
}

// What the builder needs from the ELF headers.
struct ElfLayout {
  std::string build_id;
  std::vector<Segment> exec_segments;  // PT_LOAD with PF_X: [vaddr, vaddr + memsz)
  std::vector<CodeSegment> code_segments;
  Elf_Scn* eh_frame = nullptr;
  uint64_t eh_frame_vaddr = 0;
  Elf_Scn* eh_frame_hdr_scn = nullptr;
  SectionBytes eh_frame_hdr;
  Elf_Scn* debug_frame = nullptr;
};

Result<ElfLayout> ReadLayout(Elf* elf, const GElf_Ehdr& ehdr, ErrorLog* log) {
  ElfLayout layout;
  size_t file_size = 0;
  (void)elf_rawfile(elf, &file_size);
  if (ehdr.e_shoff != 0 && ehdr.e_shoff + uint64_t{ehdr.e_shnum} * ehdr.e_shentsize > file_size) {
    log->Add(fmt::format("section headers at {:#x} lie past the end of the {}-byte file",
                         ehdr.e_shoff, file_size));
  }
  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) != 0) return DataLoss("bad program headers: {}", ElfErr());
  bool has_eh_frame_phdr = false;
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr phdr;
    if (gelf_getphdr(elf, static_cast<int>(i), &phdr) == nullptr) {
      return DataLoss("bad program header {}: {}", i, ElfErr());
    }
    if (phdr.p_type == PT_LOAD && phdr.p_offset + phdr.p_filesz > file_size) {
      log->Add(fmt::format("PT_LOAD {} lies past the end of the {}-byte file", i, file_size));
    }
    if (phdr.p_type == PT_LOAD && (phdr.p_flags & PF_X) != 0 && phdr.p_memsz > 0 &&
        phdr.p_vaddr + phdr.p_memsz > phdr.p_vaddr) {
      layout.exec_segments.push_back({phdr.p_vaddr, phdr.p_vaddr + phdr.p_memsz});
      layout.code_segments.push_back(
          {.vaddr = phdr.p_vaddr, .offset = phdr.p_offset, .filesz = phdr.p_filesz});
    } else if (phdr.p_type == PT_GNU_EH_FRAME) {
      has_eh_frame_phdr = true;
    } else if (phdr.p_type == PT_NOTE && layout.build_id.empty()) {
      layout.build_id = proc::GnuBuildIdFromNotes(elf_getdata_rawchunk(
          elf, static_cast<int64_t>(phdr.p_offset), phdr.p_filesz, ELF_T_NHDR));
    }
  }
  std::sort(layout.exec_segments.begin(), layout.exec_segments.end(),
            [](const Segment& a, const Segment& b) { return a.start < b.start; });

  bool has_sections = false;
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0) {
    log->Add(fmt::format("no section header string table: {}", ElfErr()));
  } else {
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
      has_sections = true;
      GElf_Shdr shdr;
      if (gelf_getshdr(scn, &shdr) == nullptr) {
        log->Add(fmt::format("bad section header: {}", ElfErr()));
        break;
      }
      if (shdr.sh_type == SHT_NOBITS || shdr.sh_size == 0) continue;
      const char* raw = elf_strptr(elf, shstrndx, shdr.sh_name);
      const std::string_view name = raw != nullptr ? raw : "";
      if (name == ".eh_frame") {
        layout.eh_frame = scn;
        layout.eh_frame_vaddr = shdr.sh_addr;
      } else if (name == ".debug_frame") {
        layout.debug_frame = scn;
      } else if (name == ".eh_frame_hdr") {
        // A raw chunk, not elf_getdata: libdw would keep using the section's cached data
        // after HideSection.
        Elf_Data* data = elf_getdata_rawchunk(elf, static_cast<int64_t>(shdr.sh_offset),
                                              shdr.sh_size, ELF_T_BYTE);
        if (data == nullptr || data->d_buf == nullptr) {
          log->Add(fmt::format(".eh_frame_hdr unreadable: {}", ElfErr()));
        } else {
          layout.eh_frame_hdr = {{static_cast<const uint8_t*>(data->d_buf), data->d_size},
                                 shdr.sh_addr};
          layout.eh_frame_hdr_scn = scn;
        }
      } else if (shdr.sh_type == SHT_NOTE) {
        // Sections before segments: a note section holds exactly one file's notes.
        const std::string id = proc::GnuBuildIdFromNotes(elf_getdata(scn, nullptr));
        if (!id.empty()) layout.build_id = id;
      }
    }
  }
  if (layout.eh_frame == nullptr && has_eh_frame_phdr && !has_sections) {
    // An sstripped file: libdw could read .eh_frame through PT_GNU_EH_FRAME, but we cannot
    // list and vet its FDEs without the section's bounds.
    log->Add("PT_GNU_EH_FRAME without section headers: .eh_frame not indexed");
  }
  return layout;
}

void CountUnsupported(Unsupported why, UnsupportedCounts* c) {
  switch (why) {
    case Unsupported::kNo:
      break;
    case Unsupported::kCfaRegister:
      ++c->cfa_register;
      break;
    case Unsupported::kCfaExpression:
      ++c->cfa_expression;
      break;
    case Unsupported::kCfaUndefined:
      ++c->cfa_undefined;
      break;
    case Unsupported::kCfaOffset:
      ++c->cfa_offset;
      break;
    case Unsupported::kRaRule:
      ++c->ra_rule;
      break;
    case Unsupported::kRbpRule:
      ++c->rbp_rule;
      break;
  }
}

// Where libdw may be asked for rows: the ranges of the FDEs that passed vetting, minus those of
// refused ones (libdw might pick a refused FDE for an address both cover). Sorted, disjoint.
std::vector<Interval> AllowedRanges(const std::vector<FdeInfo>& fdes) {
  std::vector<Interval> safe;
  std::vector<Interval> refused;
  for (const FdeInfo& f : fdes) {
    if (f.end <= f.start) continue;
    std::vector<Interval>& v = f.safe ? safe : refused;
    if (!v.empty() && f.start <= v.back().end) {
      v.back().end = std::max(v.back().end, f.end);
    } else {
      v.push_back({f.start, f.end, {}});
    }
  }
  return SubtractCovered(safe, refused);
}

bool Contains(const std::vector<Interval>& ranges, uint64_t addr) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), addr,
                             [](uint64_t a, const Interval& r) { return a < r.start; });
  return it != ranges.begin() && addr < std::prev(it)->end;
}

// Walks the rows of every vetted FDE: from an FDE's initial location, asks libdw for the row
// there, records it for [row pc, row end), and goes on at the row's end while that is in an
// allowed range (contiguous FDEs are walked in one go). `forbidden`: ranges libdw must not be
// asked about (UnvettedHdrRanges).
void WalkRows(Dwarf_CFI* cfi, const std::vector<FdeInfo>& fdes,
              const std::vector<Interval>& forbidden, const char* source, BuildStats* stats,
              ErrorLog* log, std::vector<Interval>* out) {
  const std::vector<Interval> allowed = SubtractCovered(AllowedRanges(fdes), forbidden);
  stats->fdes += fdes.size();
  uint64_t cursor = 0;  // everything below is walked
  for (const FdeInfo& fde : fdes) {
    if (fde.start < cursor || !Contains(allowed, fde.start)) continue;
    uint64_t addr = fde.start;
    for (bool first = true; Contains(allowed, addr); first = false) {
      if (stats->rows >= kMaxRows) {
        log->Add(fmt::format("{}: more than {} rows, the rest is dropped", source, kMaxRows));
        return;
      }
      Dwarf_Frame* raw = nullptr;
      if (dwarf_cfi_addrframe(cfi, addr, &raw) != 0) {
        if (first) log->Add(fmt::format("{} FDE at {:#x}: {}", source, addr, dwarf_errmsg(-1)));
        break;
      }
      const FrameHandle frame(raw);
      Dwarf_Addr row_start = 0;
      Dwarf_Addr row_end = 0;
      bool signal = false;
      const int ra_column = dwarf_frame_info(frame.get(), &row_start, &row_end, &signal);
      if (ra_column < 0 || row_end <= addr) {
        log->Add(fmt::format("{} row at {:#x}: bad range", source, addr));
        break;
      }
      auto mapped = MapFrame(frame.get(), signal, static_cast<unsigned>(ra_column));
      if (!mapped) {
        log->Add(fmt::format("{} row at {:#x}: {}", source, addr, dwarf_errmsg(-1)));
        break;
      }
      ++stats->rows;  // reset to the table's row count at the end
      CountUnsupported(mapped->why, &stats->unsupported);
      out->push_back({addr, row_end, mapped->rule});
      addr = row_end;
    }
    cursor = std::max(cursor, addr);
  }
}

// Marks a section SHT_NOBITS in our (private, copy-on-write) view of the file, so libdw
// ignores it.
bool HideSection(Elf_Scn* scn) {
  GElf_Shdr shdr;
  if (gelf_getshdr(scn, &shdr) == nullptr) return false;
  shdr.sh_type = SHT_NOBITS;
  return gelf_update_shdr(scn, &shdr) != 0;
}

// The address ranges where libdw's binary search through `table` would land on an entry that
// names no FDE our walk of .eh_frame found (same offset, same initial location): libdw jumps to
// whatever offset the table says, and only FDEs we have vetted may run. Sorted, disjoint.
std::vector<Interval> UnvettedHdrRanges(const std::vector<HdrEntry>& table,
                                        const std::vector<FdeInfo>& fdes, uint64_t eh_frame_vaddr,
                                        ErrorLog* log) {
  std::map<uint64_t, uint64_t> start_at;  // FDE offset -> initial location
  for (const FdeInfo& f : fdes) start_at[f.offset] = f.start;
  std::vector<Interval> out;
  for (size_t i = 0; i < table.size(); ++i) {
    auto it = start_at.find(table[i].fde_vaddr - eh_frame_vaddr);
    if (it != start_at.end() && it->second == table[i].start) continue;
    log->Add(fmt::format(".eh_frame_hdr: entry {} ({:#x}) names no FDE of .eh_frame", i,
                         table[i].start));
    const uint64_t end = i + 1 < table.size() ? table[i + 1].start : UINT64_MAX;
    if (!out.empty() && out.back().end >= table[i].start) {
      out.back().end = std::max(out.back().end, end);
    } else if (end > table[i].start) {
      out.push_back({table[i].start, end, {}});
    }
  }
  return out;
}

std::vector<Interval> EhFrameIntervals(Elf* elf, const ElfLayout& layout, BuildStats* stats,
                                       ErrorLog* log) {
  std::vector<Interval> out;
  if (layout.eh_frame == nullptr) return out;
  std::optional<std::vector<HdrEntry>> table;
  std::vector<uint64_t> resync;  // FDE offsets the header knows, to skip damaged entries
  if (layout.eh_frame_hdr_scn != nullptr) {
    table = EhFrameHdrTable(layout.eh_frame_hdr, log);
    for (const HdrEntry& e : table.value_or(std::vector<HdrEntry>{})) {
      resync.push_back(e.fde_vaddr - layout.eh_frame_vaddr);
    }
    std::sort(resync.begin(), resync.end());
  }
  const std::vector<FdeInfo> fdes = IndexFdes(Ident(elf), elf_getdata(layout.eh_frame, nullptr),
                                              true, layout.eh_frame_vaddr, resync, log);
  std::vector<Interval> unvetted;
  if (table) unvetted = UnvettedHdrRanges(*table, fdes, layout.eh_frame_vaddr, log);
  if (layout.eh_frame_hdr_scn != nullptr) {
    if (!table) {
      // libdw refuses a damaged .eh_frame_hdr, or would look FDEs up through its damaged
      // table: without the header it indexes .eh_frame itself. (This must precede the first
      // dwarf_getcfi_elf: a second call after a failed one fails again.)
      if (!HideSection(layout.eh_frame_hdr_scn)) {
        log->Add(fmt::format("cannot set .eh_frame_hdr aside: {}", ElfErr()));
        return out;
      }
    }
  }
  const CfiHandle cfi(dwarf_getcfi_elf(elf));
  if (!cfi) {
    log->Add(fmt::format(".eh_frame unusable: {}", dwarf_errmsg(-1)));
    return out;
  }
  WalkRows(cfi.get(), fdes, unvetted, ".eh_frame", stats, log, &out);
  return out;
}

std::vector<Interval> DebugFrameIntervals(Elf* elf, const ElfLayout& layout, BuildStats* stats,
                                          ErrorLog* log) {
  std::vector<Interval> out;
  if (layout.debug_frame == nullptr) return out;
  GElf_Shdr shdr;
  if (gelf_getshdr(layout.debug_frame, &shdr) != nullptr && (shdr.sh_flags & SHF_COMPRESSED) &&
      elf_compress(layout.debug_frame, 0, 0) < 0) {
    log->Add(fmt::format(".debug_frame: cannot decompress: {}", ElfErr()));
    return out;
  }
  Elf_Data* data = elf_getdata(layout.debug_frame, nullptr);
  const DwarfHandle dwarf(dwarf_begin_elf(elf, DWARF_C_READ, nullptr));
  Dwarf_CFI* cfi = dwarf ? dwarf_getcfi(dwarf.get()) : nullptr;  // owned by `dwarf`
  if (data == nullptr || cfi == nullptr) {
    log->Add(fmt::format(".debug_frame unusable: {}", dwarf_errmsg(-1)));
    return out;
  }
  const std::vector<FdeInfo> fdes = IndexFdes(Ident(elf), data, false, 0, {}, log);
  WalkRows(cfi, fdes, {}, ".debug_frame", stats, log, &out);
  return out;
}

Result<UnwindTable> BuildFromElf(Elf* elf, BuildStats* stats_out) {
  BuildStats local;
  BuildStats& stats = stats_out != nullptr ? *stats_out : local;
  stats = BuildStats{};
  if (elf_kind(elf) != ELF_K_ELF) return InvalidArgument("not an ELF file");
  const char* ident = elf_getident(elf, nullptr);
  GElf_Ehdr ehdr;
  if (ident == nullptr || gelf_getehdr(elf, &ehdr) == nullptr) {
    return DataLoss("bad ELF header: {}", ElfErr());
  }
  if (ehdr.e_machine != EM_X86_64 || ident[EI_CLASS] != ELFCLASS64 ||
      ident[EI_DATA] != ELFDATA2LSB) {
    return Unimplemented("unwind tables are built for x86-64 only (e_machine {}, class {})",
                         ehdr.e_machine, static_cast<int>(ident[EI_CLASS]));
  }
  ErrorLog log;
  FS_ASSIGN_OR_RETURN(const ElfLayout layout, ReadLayout(elf, ehdr, &log));

  std::vector<Interval> eh = EhFrameIntervals(elf, layout, &stats, &log);
  std::vector<Interval> debug = DebugFrameIntervals(elf, layout, &stats, &log);
  eh = ClipToSegments(eh, layout.exec_segments, &log);
  debug = ClipToSegments(debug, layout.exec_segments, &log);
  debug = SubtractCovered(debug, eh);
  stats.from_debug_frame = !debug.empty();
  eh.insert(eh.end(), debug.begin(), debug.end());
  std::sort(eh.begin(), eh.end(),
            [](const Interval& a, const Interval& b) { return a.start < b.start; });

  UnwindTable table;
  table.build_id = layout.build_id;
  table.code_segments = layout.code_segments;
  FS_RETURN_IF_ERROR(AssembleRows(eh, &table.base, &table.end, &table.rows));
  stats.rows = table.rows.size();
  for (const fs_unwind_row& row : table.rows) {
    stats.unsupported_rows += row.cfa_kind == FS_CFA_UNSUPPORTED;
    stats.plt_rows += row.cfa_kind == FS_CFA_PLT;
    stats.signal_rows += row.cfa_kind == FS_CFA_SIGNAL;
    stats.end_rows += row.cfa_kind == FS_CFA_END;
  }
  stats.errors = log.count;
  stats.first_error = std::move(log.first);
  return table;
}

}  // namespace

const fs_unwind_row* UnwindTable::Find(uint64_t vaddr) const {
  if (vaddr < base || vaddr >= end || rows.empty()) return nullptr;
  const uint64_t pc = vaddr - base;
  auto it = std::upper_bound(rows.begin(), rows.end(), pc,
                             [](uint64_t v, const fs_unwind_row& r) { return v < r.pc; });
  return it == rows.begin() ? nullptr : &*std::prev(it);
}

Result<uint64_t> UnwindTable::Shift(uint64_t map_start, uint64_t map_offset) const {
  return RowPcShift(code_segments, base, map_start, map_offset);
}

Result<uint64_t> RowPcShift(const std::vector<CodeSegment>& segments, uint64_t base,
                            uint64_t map_start, uint64_t map_offset) {
  constexpr uint64_t kPage = 4096;
  for (const CodeSegment& seg : segments) {
    // A mapping starts at a page boundary; the segment's first page may begin before p_offset.
    const uint64_t first = seg.offset & ~(kPage - 1);
    if (map_offset >= first && map_offset < seg.offset + seg.filesz) {
      // vaddr = address - map_start + map_offset - seg.offset + seg.vaddr; pc = vaddr - base.
      return map_start - map_offset + seg.offset - seg.vaddr + base;
    }
  }
  return NotFound("no executable segment holds file offset {:#x}", map_offset);
}

Result<UnwindTable> BuildTable(const std::string& path, BuildStats* stats) {
  InitLibelfOnce();
  const common::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError(errno, fmt::format("open {}", path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, fmt::format("stat {}", path));
  if (!S_ISREG(st.st_mode)) return InvalidArgument("{} is not a regular file", path);
  // MMAP_PRIVATE: HideSection may write to our view of the section headers.
  const ElfHandle elf(elf_begin(fd.get(), ELF_C_READ_MMAP_PRIVATE, nullptr));
  if (!elf) return DataLoss("{}: {}", path, ElfErr());
  Result<UnwindTable> table = BuildFromElf(elf.get(), stats);
  if (!table.ok()) return table.error().WithContext(path);
  return table;
}

Result<UnwindTable> BuildTableFromImage(std::string_view image, BuildStats* stats) {
  InitLibelfOnce();
  // elf_memory takes a mutable buffer (libelf may convert data in place).
  std::vector<char> copy(image.begin(), image.end());
  const ElfHandle elf(elf_memory(copy.data(), copy.size()));
  if (!elf) return DataLoss("{}", ElfErr());
  return BuildFromElf(elf.get(), stats);
}

}  // namespace flamestream::unwind
