// Maps one CFI row (what libdw says about the CFA, the return address and rbp at one pc) onto
// the rules a compact row can hold (bpf/unwind.h). MapRule is pure, so tests feed it the
// DWARF operations libdw would return; MapFrame reads them off a Dwarf_Frame.
#pragma once

#include <elfutils/libdw.h>
#include <linux/types.h>

#include <cstdint>
#include <optional>
#include <span>

#include "unwind.h"

namespace flamestream::unwind {

// DWARF register numbers of x86-64 (System V psABI, figure 3.36).
inline constexpr unsigned kDwarfRbp = 6;
inline constexpr unsigned kDwarfRsp = 7;
inline constexpr unsigned kDwarfRa = 16;  // the return address column (rip)

// A row's rules without its pc.
struct Rule {
  uint8_t cfa_kind = FS_CFA_NONE;
  uint8_t rbp_kind = FS_RBP_SAME;
  int16_t rbp_offset = 0;
  int32_t cfa_offset = 0;
  friend bool operator==(const Rule&, const Rule&) = default;
};

// Why a row is FS_CFA_UNSUPPORTED (BuildStats::unsupported).
enum class Unsupported {
  kNo,
  kCfaRegister,
  kCfaExpression,
  kCfaUndefined,
  kCfaOffset,
  kRaRule,
  kRbpRule,
};

struct MappedRule {
  Rule rule;
  Unsupported why = Unsupported::kNo;
};

// A register's rule as dwarf_frame_register reports it: undefined (nops 0, ops = ops_mem),
// same value (nops 0, ops null), or a location/value expression.
struct RegisterRule {
  enum class Kind { kUndefined, kSameValue, kOps };
  Kind kind = Kind::kUndefined;
  std::span<const Dwarf_Op> ops;
};

// `cfa` is dwarf_frame_cfa's expression (empty: no CFA rule); `ra_column` the frame's return
// address register (dwarf_frame_info); `signal` whether its CIE has the 'S' augmentation.
MappedRule MapRule(bool signal, unsigned ra_column, std::span<const Dwarf_Op> cfa,
                   const RegisterRule& ra, const RegisterRule& rbp);

// MapRule on the rules libdw computed for `frame`; nullopt on a libdw error (a malformed
// expression), with dwarf_errmsg(-1) telling why.
std::optional<MappedRule> MapFrame(Dwarf_Frame* frame, bool signal, unsigned ra_column);

}  // namespace flamestream::unwind
