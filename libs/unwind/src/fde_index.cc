#include "fde_index.h"

#include <dwarf.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace flamestream::unwind {
namespace {

// Sections are walked entry by entry; a corrupt length cannot make us loop forever, but a
// section of nothing but tiny entries could take long: no real file has a million FDEs in one
// section (libxul has ~300k).
constexpr size_t kMaxEntries = size_t{1} << 22;

void SortUnique(std::vector<uint64_t>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

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

std::optional<std::vector<uint64_t>> EhFrameHdrStarts(const SectionBytes& hdr, ErrorLog* log) {
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
  std::vector<uint64_t> starts;
  starts.reserve(count->value);
  for (uint64_t i = 0; i < count->value; ++i) {
    auto loc = DecodeEhPointer(hdr, table_pos + i * 2 * entry_size, table_enc, hdr.vaddr);
    if (!loc) {
      log->Add(fmt::format(".eh_frame_hdr: table entry {} unreadable", i));
      return std::nullopt;
    }
    starts.push_back(loc->value);
  }
  // The linker writes the table sorted (it is a binary-search table); an unsorted one is
  // damaged, and libdw's lookups through it would miss FDEs.
  if (!std::is_sorted(starts.begin(), starts.end())) {
    log->Add(".eh_frame_hdr: search table not sorted");
    return std::nullopt;
  }
  SortUnique(&starts);
  return starts;
}

std::vector<uint64_t> ScanFdeStarts(const unsigned char* e_ident, Elf_Data* data, bool eh_frame,
                                    uint64_t vaddr, ErrorLog* log) {
  const char* name = eh_frame ? ".eh_frame" : ".debug_frame";
  std::vector<uint64_t> starts;
  if (data == nullptr || data->d_buf == nullptr) return starts;
  const auto* base = static_cast<const uint8_t*>(data->d_buf);
  const SectionBytes section{{base, data->d_size}, vaddr};
  // CIE offset -> the encoding of its FDEs' initial_location/address_range. In .debug_frame
  // both are target addresses (address-size, 8 bytes).
  std::map<Dwarf_Off, std::optional<uint8_t>> cies;
  Dwarf_Off off = 0;
  for (size_t n = 0; n < kMaxEntries; ++n) {
    Dwarf_Off next = static_cast<Dwarf_Off>(-1);
    Dwarf_CFI_Entry entry{};
    const int r = dwarf_next_cfi(e_ident, data, eh_frame, off, &next, &entry);
    if (r == 1) break;
    if (r < 0) {
      log->Add(fmt::format("{} entry at {:#x}: {}", name, off, dwarf_errmsg(-1)));
      if (next == static_cast<Dwarf_Off>(-1) || next <= off) break;
      off = next;
      continue;
    }
    if (dwarf_cfi_cie_p(&entry)) {
      cies[off] = eh_frame ? CieFdeEncoding(entry.cie) : std::optional<uint8_t>(DW_EH_PE_absptr);
    } else {
      auto cie = cies.find(entry.fde.CIE_pointer);
      if (cie == cies.end() || !cie->second) {
        log->Add(fmt::format("{} FDE at {:#x}: CIE at {:#x} missing or unreadable", name, off,
                             entry.fde.CIE_pointer));
      } else {
        const uint8_t enc = *cie->second;
        const auto pos = static_cast<size_t>(entry.fde.start - base);
        auto loc = DecodeEhPointer(section, pos, enc, 0);
        auto range = loc ? DecodeEhPointer(section, loc->next, enc & 0x0f, 0) : std::nullopt;
        if (!range || range->next > static_cast<size_t>(entry.fde.end - base)) {
          log->Add(fmt::format("{} FDE at {:#x}: bad initial location", name, off));
        } else if (range->value != 0) {
          starts.push_back(loc->value);
        }
      }
    }
    if (next <= off) break;
    off = next;
  }
  SortUnique(&starts);
  return starts;
}

}  // namespace flamestream::unwind
