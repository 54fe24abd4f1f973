#include "cfa_vet.h"

#include <dwarf.h>

#include <optional>

namespace flamestream::unwind {
namespace {

struct Cursor {
  std::span<const uint8_t> b;
  size_t pos = 0;

  std::optional<uint64_t> Uleb() {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && pos < b.size(); shift += 7) {
      const uint8_t byte = b[pos++];
      v |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return v;
    }
    return std::nullopt;
  }
  bool Skip(uint64_t n) {
    if (n > b.size() - pos) return false;
    pos += n;
    return true;
  }
  bool Register() {
    auto r = Uleb();
    return r && *r <= kMaxCfiRegister;
  }
  bool Block() {
    auto n = Uleb();
    return n && Skip(*n);
  }
};

}  // namespace

bool CfaInstructionsSafe(std::span<const uint8_t> insns, unsigned address_size) {
  Cursor c{insns};
  int depth = 0;
  while (c.pos < c.b.size()) {
    const uint8_t op = c.b[c.pos++];
    bool ok = true;
    switch (op & 0xc0) {
      case DW_CFA_advance_loc:
      case DW_CFA_restore:
        continue;  // register in the low 6 bits: < 64
      case DW_CFA_offset:
        ok = c.Uleb().has_value();
        if (!ok) return false;
        continue;
      default:
        break;
    }
    switch (op) {
      case DW_CFA_nop:
        break;
      case DW_CFA_restore_state:
        depth -= depth > 0 ? 1 : 0;
        break;
      case DW_CFA_remember_state:
        ok = ++depth <= kMaxRememberDepth;
        break;
      case DW_CFA_set_loc:
        ok = c.Skip(address_size);
        break;
      case DW_CFA_advance_loc1:
        ok = c.Skip(1);
        break;
      case DW_CFA_advance_loc2:
        ok = c.Skip(2);
        break;
      case DW_CFA_advance_loc4:
        ok = c.Skip(4);
        break;
      case DW_CFA_MIPS_advance_loc8:
        ok = c.Skip(8);
        break;
      case DW_CFA_def_cfa_offset:
      case DW_CFA_def_cfa_offset_sf:
      case DW_CFA_GNU_args_size:
        ok = c.Uleb().has_value();
        break;
      case DW_CFA_restore_extended:
      case DW_CFA_undefined:
      case DW_CFA_same_value:
      case DW_CFA_def_cfa_register:
        ok = c.Register();
        break;
      case DW_CFA_offset_extended:
      case DW_CFA_offset_extended_sf:
      case DW_CFA_def_cfa:
      case DW_CFA_def_cfa_sf:
      case DW_CFA_val_offset:
      case DW_CFA_val_offset_sf:
      case DW_CFA_GNU_negative_offset_extended:
        ok = c.Register() && c.Uleb().has_value();
        break;
      case DW_CFA_register:
        ok = c.Register() && c.Register();
        break;
      case DW_CFA_def_cfa_expression:
        ok = c.Block();
        break;
      case DW_CFA_expression:
      case DW_CFA_val_expression:
        ok = c.Register() && c.Block();
        break;
      default:
        return false;  // unknown: libdw would refuse it too
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace flamestream::unwind
