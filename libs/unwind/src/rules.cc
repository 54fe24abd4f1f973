#include "rules.h"

#include <dwarf.h>

#include <array>
#include <limits>

namespace flamestream::unwind {
namespace {

template <typename T>
bool Fits(int64_t v) {
  return v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max();
}

// The CFA rule binutils' ld writes for lazy-binding .plt entries (elf_x86_64_eh_frame_plt and
// its IBT variants): CFA = rsp + 8 + ((rip & 15) >= N ? 8 : 0), because the entry's `push`
// sits N bytes into each 16-byte entry (11 classic, 10 or 9 with endbr64).
//   DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_litN; DW_OP_ge;
//   DW_OP_lit3; DW_OP_shl; DW_OP_plus
std::optional<int32_t> PltThreshold(std::span<const Dwarf_Op> ops) {
  constexpr std::array<uint8_t, 9> kAtoms = {DW_OP_breg7, DW_OP_breg16, DW_OP_lit15, DW_OP_and, 0,
                                             DW_OP_ge,    DW_OP_lit3,   DW_OP_shl,   DW_OP_plus};
  if (ops.size() != kAtoms.size()) return std::nullopt;
  for (size_t i = 0; i < kAtoms.size(); ++i) {
    if (i == 4) {
      if (ops[i].atom < DW_OP_lit0 || ops[i].atom > DW_OP_lit15) return std::nullopt;
    } else if (ops[i].atom != kAtoms[i]) {
      return std::nullopt;
    }
  }
  if (ops[0].number != 8 || ops[1].number != 0) return std::nullopt;
  return ops[4].atom - DW_OP_lit0;
}

// "saved at CFA + N": [DW_OP_call_frame_cfa] or [DW_OP_call_frame_cfa, DW_OP_plus_uconst N]
// (libdw writes offset(N) so, N wrapped to unsigned). A val_offset rule ends with
// DW_OP_stack_value and does not match.
std::optional<int64_t> SavedAtCfa(const RegisterRule& r) {
  if (r.kind != RegisterRule::Kind::kOps || r.ops.empty() ||
      r.ops[0].atom != DW_OP_call_frame_cfa) {
    return std::nullopt;
  }
  if (r.ops.size() == 1) return 0;
  if (r.ops.size() == 2 && r.ops[1].atom == DW_OP_plus_uconst) {
    return static_cast<int64_t>(r.ops[1].number);
  }
  return std::nullopt;
}

MappedRule Unsupport(Unsupported why) {
  MappedRule m;
  m.rule.cfa_kind = FS_CFA_UNSUPPORTED;
  m.why = why;
  return m;
}

RegisterRule ReadRegister(Dwarf_Frame* frame, int regno, Dwarf_Op* ops_mem, bool* ok) {
  Dwarf_Op* ops = nullptr;
  size_t nops = 0;
  if (dwarf_frame_register(frame, regno, ops_mem, &ops, &nops) != 0) {
    *ok = false;
    return {};
  }
  if (nops == 0) {
    return {ops == nullptr ? RegisterRule::Kind::kSameValue : RegisterRule::Kind::kUndefined, {}};
  }
  return {RegisterRule::Kind::kOps, {ops, nops}};
}

}  // namespace

MappedRule MapRule(bool signal, unsigned ra_column, std::span<const Dwarf_Op> cfa,
                   const RegisterRule& ra, const RegisterRule& rbp) {
  MappedRule m;
  if (signal) {
    m.rule.cfa_kind = FS_CFA_SIGNAL;
    return m;
  }
  if (ra_column != kDwarfRa) return Unsupport(Unsupported::kRaRule);
  if (ra.kind == RegisterRule::Kind::kUndefined) {
    m.rule.cfa_kind = FS_CFA_END;
    return m;
  }

  if (cfa.empty()) return Unsupport(Unsupported::kCfaUndefined);
  if (cfa.size() == 1 &&
      (cfa[0].atom == DW_OP_bregx || (cfa[0].atom >= DW_OP_breg0 && cfa[0].atom <= DW_OP_breg31))) {
    // def_cfa(reg, off) comes back as DW_OP_bregx reg off; a def_cfa_expression of one
    // DW_OP_bregN off means the same.
    const bool x = cfa[0].atom == DW_OP_bregx;
    const uint64_t reg = x ? cfa[0].number : uint64_t{cfa[0].atom} - DW_OP_breg0;
    const auto off = static_cast<int64_t>(x ? cfa[0].number2 : cfa[0].number);
    if (reg != kDwarfRsp && reg != kDwarfRbp) return Unsupport(Unsupported::kCfaRegister);
    if (!Fits<int32_t>(off)) return Unsupport(Unsupported::kCfaOffset);
    m.rule.cfa_kind = reg == kDwarfRsp ? FS_CFA_RSP : FS_CFA_RBP;
    m.rule.cfa_offset = static_cast<int32_t>(off);
  } else if (auto threshold = PltThreshold(cfa)) {
    m.rule.cfa_kind = FS_CFA_PLT;
    m.rule.cfa_offset = *threshold;
  } else {
    return Unsupport(Unsupported::kCfaExpression);
  }

  if (SavedAtCfa(ra) != -8) return Unsupport(Unsupported::kRaRule);

  if (rbp.kind != RegisterRule::Kind::kOps) return m;  // same value, undefined, no rule
  auto rbp_off = SavedAtCfa(rbp);
  if (!rbp_off || !Fits<int16_t>(*rbp_off)) return Unsupport(Unsupported::kRbpRule);
  m.rule.rbp_kind = FS_RBP_AT_CFA;
  m.rule.rbp_offset = static_cast<int16_t>(*rbp_off);
  return m;
}

std::optional<MappedRule> MapFrame(Dwarf_Frame* frame, bool signal, unsigned ra_column) {
  if (signal) return MapRule(true, ra_column, {}, {}, {});
  Dwarf_Op* cfa_ops = nullptr;
  size_t cfa_nops = 0;
  if (dwarf_frame_cfa(frame, &cfa_ops, &cfa_nops) != 0) return std::nullopt;
  std::array<Dwarf_Op, 3> ra_mem{};
  std::array<Dwarf_Op, 3> rbp_mem{};
  bool ok = true;
  const RegisterRule ra = ReadRegister(frame, kDwarfRa, ra_mem.data(), &ok);
  const RegisterRule rbp = ReadRegister(frame, kDwarfRbp, rbp_mem.data(), &ok);
  if (!ok) return std::nullopt;
  return MapRule(false, ra_column, {cfa_ops, cfa_nops}, ra, rbp);
}

}  // namespace flamestream::unwind
