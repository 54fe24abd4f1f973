#include "fde_index.h"

#include <dwarf.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "cfa_vet.h"

namespace flamestream::unwind {
namespace {

// Sections are walked entry by entry; a corrupt length cannot make us loop forever, but a
// section of nothing but tiny entries could take long: no real file has a million FDEs in one
// section (libxul has ~300k).
constexpr size_t kMaxEntries = size_t{1} << 22;

// Fixed-size little-endian integer at `pos` (x86-64 only, so no byte swapping).
std::optional<uint64_t> ReadFixed(std::span<const uint8_t> b, size_t pos, size_t n, bool sign) {
  if (pos > b.size() || b.size() - pos < n) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{b[pos + i]} << (8 * i);
  if (sign && n < 8 && (v >> (8 * n - 1)) != 0) v |= ~uint64_t{0} << (8 * n);
  return v;
}

// LEB128 of at most 10 bytes.
std::optional<uint64_t> ReadLeb(std::span<const uint8_t> b, size_t* pos, bool sign) {
  uint64_t v = 0;
  unsigned shift = 0;
  for (size_t i = 0; i < 10 && *pos < b.size(); ++i) {
    const uint8_t byte = b[(*pos)++];
    if (shift < 64) v |= uint64_t{byte & 0x7fu} << shift;
    shift += 7;
    if ((byte & 0x80) == 0) {
      if (sign && shift < 64 && (byte & 0x40) != 0) v |= ~uint64_t{0} << shift;
      return v;
    }
  }
  return std::nullopt;
}

// The FDE pointer encoding of an `.eh_frame` CIE: the byte after 'R' in its 'z' augmentation
// data; absptr when there is none. nullopt for augmentations we cannot skip.
std::optional<uint8_t> CieFdeEncoding(const Dwarf_CIE& cie) {
  const char* aug = cie.augmentation;
  if (aug == nullptr || aug[0] != 'z') {
    // Pre-'z' CIEs ("", "eh"): no encoded pointers.
    return (aug == nullptr || aug[0] == '\0') ? std::optional<uint8_t>(DW_EH_PE_absptr)
                                              : std::nullopt;
  }
  const SectionBytes data{{cie.augmentation_data, cie.augmentation_data_size}, 0};
  size_t pos = 0;
  uint8_t encoding = DW_EH_PE_absptr;
  for (const char* ap = aug + 1; *ap != '\0'; ++ap) {
    switch (*ap) {
      case 'R':
      case 'L': {
        if (pos >= data.bytes.size()) return std::nullopt;
        const uint8_t e = data.bytes[pos++];
        if (*ap == 'R') encoding = e;
        break;
      }
      case 'P': {
        if (pos >= data.bytes.size()) return std::nullopt;
        const uint8_t e = data.bytes[pos++];
        // Only the size matters: decode with the pc-relative part dropped.
        auto p = DecodeEhPointer(data, pos, e & 0x0f, 0);
        if (!p) return std::nullopt;
        pos = p->next;
        break;
      }
      case 'S':
      case 'B':
        break;
      default:
        // Unknown letter: the 'R' byte, if any, was already read (letters come in order).
        return encoding;
    }
  }
  return encoding;
}

}  // namespace

std::optional<DecodedPointer> DecodeEhPointer(const SectionBytes& section, size_t pos,
                                              uint8_t encoding, uint64_t datarel_base) {
  if (encoding == DW_EH_PE_omit || (encoding & DW_EH_PE_indirect) != 0) return std::nullopt;
  const std::span<const uint8_t> b = section.bytes;
  std::optional<uint64_t> raw;
  size_t next = pos;
  auto fixed = [&](size_t n, bool sign) {
    raw = ReadFixed(b, pos, n, sign);
    next = pos + n;
  };
  switch (encoding & 0x0f) {
    case DW_EH_PE_absptr:
      fixed(8, false);
      break;
    case DW_EH_PE_udata2:
      fixed(2, false);
      break;
    case DW_EH_PE_udata4:
      fixed(4, false);
      break;
    case DW_EH_PE_udata8:
      fixed(8, false);
      break;
    case DW_EH_PE_sdata2:
      fixed(2, true);
      break;
    case DW_EH_PE_sdata4:
      fixed(4, true);
      break;
    case DW_EH_PE_sdata8:
      fixed(8, true);
      break;
    case DW_EH_PE_uleb128:
      raw = ReadLeb(b, &next, false);
      break;
    case DW_EH_PE_sleb128:
      raw = ReadLeb(b, &next, true);
      break;
    default:
      return std::nullopt;
  }
  if (!raw) return std::nullopt;
  switch (encoding & 0x70) {
    case DW_EH_PE_absptr:
      return DecodedPointer{*raw, next};
    case DW_EH_PE_pcrel:
      return DecodedPointer{section.vaddr + pos + *raw, next};
    case DW_EH_PE_datarel:
      return DecodedPointer{datarel_base + *raw, next};
    default:
      return std::nullopt;  // textrel, funcrel, aligned: never used for these pointers
  }
}

std::optional<std::vector<HdrEntry>> EhFrameHdrTable(const SectionBytes& hdr, ErrorLog* log) {
  const std::span<const uint8_t> b = hdr.bytes;
  if (b.size() < 4) {
    log->Add(fmt::format(".eh_frame_hdr: {} bytes, too short", b.size()));
    return std::nullopt;
  }
  if (b[0] != 1) {
    log->Add(fmt::format(".eh_frame_hdr: version {}, want 1", b[0]));
    return std::nullopt;
  }
  const uint8_t ptr_enc = b[1];
  const uint8_t count_enc = b[2];
  const uint8_t table_enc = b[3];
  if (count_enc == DW_EH_PE_omit || table_enc == DW_EH_PE_omit) {
    return std::nullopt;  // valid, but no search table: the caller walks .eh_frame
  }
  auto frame_ptr = DecodeEhPointer(hdr, 4, ptr_enc, hdr.vaddr);
  auto count =
      frame_ptr ? DecodeEhPointer(hdr, frame_ptr->next, count_enc, hdr.vaddr) : std::nullopt;
  if (!count) {
    log->Add(fmt::format(".eh_frame_hdr: bad eh_frame_ptr/fde_count encoding {:#x}/{:#x}", ptr_enc,
                         count_enc));
    return std::nullopt;
  }
  size_t entry_size = 0;
  switch (table_enc & 0x0f) {
    case DW_EH_PE_udata2:
    case DW_EH_PE_sdata2:
      entry_size = 2;
      break;
    case DW_EH_PE_udata4:
    case DW_EH_PE_sdata4:
      entry_size = 4;
      break;
    case DW_EH_PE_absptr:
    case DW_EH_PE_udata8:
    case DW_EH_PE_sdata8:
      entry_size = 8;
      break;
    default:
      break;
  }
  const size_t table_pos = count->next;
  if (entry_size == 0 || (table_enc & DW_EH_PE_indirect) != 0) {
    log->Add(fmt::format(".eh_frame_hdr: table encoding {:#x} unsupported", table_enc));
    return std::nullopt;
  }
  if (count->value > (b.size() - table_pos) / (2 * entry_size)) {
    log->Add(fmt::format(".eh_frame_hdr: fde_count {} overruns the {}-byte section", count->value,
                         b.size()));
    return std::nullopt;
  }
  std::vector<HdrEntry> table;
  table.reserve(count->value);
  for (uint64_t i = 0; i < count->value; ++i) {
    const size_t pos = table_pos + i * 2 * entry_size;
    auto loc = DecodeEhPointer(hdr, pos, table_enc, hdr.vaddr);
    auto fde = loc ? DecodeEhPointer(hdr, loc->next, table_enc, hdr.vaddr) : std::nullopt;
    if (!fde) {
      log->Add(fmt::format(".eh_frame_hdr: table entry {} unreadable", i));
      return std::nullopt;
    }
    table.push_back({loc->value, fde->value});
  }
  // The linker writes the table sorted (it is a binary-search table); an unsorted one is
  // damaged, and libdw's lookups through it would miss FDEs.
  if (!std::is_sorted(table.begin(), table.end(),
                      [](const HdrEntry& a, const HdrEntry& b) { return a.start < b.start; })) {
    log->Add(".eh_frame_hdr: search table not sorted");
    return std::nullopt;
  }
  return table;
}

std::vector<FdeInfo> IndexFdes(const unsigned char* e_ident, Elf_Data* data, bool eh_frame,
                               uint64_t vaddr, const std::vector<uint64_t>& resync, ErrorLog* log) {
  const char* name = eh_frame ? ".eh_frame" : ".debug_frame";
  std::vector<FdeInfo> fdes;
  if (data == nullptr || data->d_buf == nullptr) return fdes;
  const auto* base = static_cast<const uint8_t*>(data->d_buf);
  const SectionBytes section{{base, data->d_size}, vaddr};
  // What an FDE needs from its CIE. In .debug_frame initial_location and address_range are
  // target addresses (address-size, 8 bytes) and there is no augmentation data.
  struct Cie {
    std::optional<uint8_t> encoding;  // nullopt: augmentation we cannot read
    bool sized_augmentation = false;  // 'z': FDEs carry a ULEB128-sized augmentation block
    bool safe = false;
  };
  std::map<Dwarf_Off, Cie> cies;
  Dwarf_Off off = 0;
  for (size_t n = 0; n < kMaxEntries; ++n) {
    auto next = static_cast<Dwarf_Off>(-1);
    Dwarf_CFI_Entry entry{};
    const int r = dwarf_next_cfi(e_ident, data, eh_frame, off, &next, &entry);
    if (r == 1) break;
    if (r < 0) {
      log->Add(fmt::format("{} entry at {:#x}: {}", name, off, dwarf_errmsg(-1)));
      if (next == static_cast<Dwarf_Off>(-1) || next <= off) {
        auto it = std::upper_bound(resync.begin(), resync.end(), off);
        if (it == resync.end()) break;
        next = *it;
      }
      off = next;
      continue;
    }
    if (dwarf_cfi_cie_p(&entry)) {
      Cie cie;
      const char* aug = entry.cie.augmentation;
      cie.encoding =
          eh_frame ? CieFdeEncoding(entry.cie)
                   : (aug[0] == '\0' ? std::optional<uint8_t>(DW_EH_PE_absptr) : std::nullopt);
      cie.sized_augmentation = aug[0] == 'z';
      const auto* insn = entry.cie.initial_instructions;
      cie.safe = insn != nullptr && cie.encoding &&
                 CfaInstructionsSafe({insn, entry.cie.initial_instructions_end}, 8);
      if (!cie.safe) log->Add(fmt::format("{} CIE at {:#x}: refused", name, off));
      cies[off] = cie;
    } else {
      auto cie = cies.find(entry.fde.CIE_pointer);
      if (cie == cies.end() || !cie->second.encoding) {
        log->Add(fmt::format("{} FDE at {:#x}: CIE at {:#x} missing or unreadable", name, off,
                             entry.fde.CIE_pointer));
      } else {
        const uint8_t enc = *cie->second.encoding;
        const auto pos = static_cast<size_t>(entry.fde.start - base);
        const auto end = static_cast<size_t>(entry.fde.end - base);
        auto loc = DecodeEhPointer(section, pos, enc, 0);
        auto range = loc ? DecodeEhPointer(section, loc->next, enc & 0x0f, 0) : std::nullopt;
        if (!range || range->next > end || loc->value + range->value < loc->value) {
          log->Add(fmt::format("{} FDE at {:#x}: bad initial location", name, off));
        } else {
          FdeInfo fde{loc->value, loc->value + range->value, off, cie->second.safe};
          size_t insn = range->next;
          if (cie->second.sized_augmentation) {
            const std::span<const uint8_t> rest = section.bytes.first(end);
            auto aug_len = ReadLeb(rest, &insn, false);
            fde.safe = fde.safe && aug_len && *aug_len <= end - insn;
            insn = fde.safe ? insn + static_cast<size_t>(*aug_len) : end;
          }
          const size_t address_size = eh_frame ? loc->next - pos : 8;
          if (fde.safe) {
            fde.safe = CfaInstructionsSafe(section.bytes.subspan(insn, end - insn),
                                           static_cast<unsigned>(address_size));
          }
          if (!fde.safe) log->Add(fmt::format("{} FDE at {:#x}: refused", name, off));
          fdes.push_back(fde);
        }
      }
    }
    if (next <= off) break;
    off = next;
  }
  std::sort(fdes.begin(), fdes.end(),
            [](const FdeInfo& a, const FdeInfo& b) { return a.start < b.start; });
  return fdes;
}

}  // namespace flamestream::unwind
