// MapRule on the DWARF operations libdw returns for each kind of rule, and the interval steps
// (clip, subtract, assemble) on hand-made ranges.
#include "rules.h"

#include <dwarf.h>
#include <gtest/gtest.h>

#include <vector>

#include "cfa_vet.h"
#include "intervals.h"

namespace flamestream::unwind {
namespace {

using Kind = RegisterRule::Kind;

Dwarf_Op Op(uint8_t atom, uint64_t number = 0, uint64_t number2 = 0) {
  return Dwarf_Op{atom, number, number2, 0};
}
// What libdw returns for def_cfa(reg, off), offset(N) and val_offset(N).
std::vector<Dwarf_Op> DefCfa(uint64_t reg, int64_t off) {
  return {Op(DW_OP_bregx, reg, static_cast<uint64_t>(off))};
}
std::vector<Dwarf_Op> AtCfa(int64_t off) {
  return {Op(DW_OP_call_frame_cfa), Op(DW_OP_plus_uconst, static_cast<uint64_t>(off))};
}
std::vector<Dwarf_Op> Plt(uint8_t lit) {
  return {Op(DW_OP_breg7, 8), Op(DW_OP_breg16, 0), Op(DW_OP_lit15), Op(DW_OP_and), Op(lit),
          Op(DW_OP_ge),       Op(DW_OP_lit3),      Op(DW_OP_shl),   Op(DW_OP_plus)};
}

struct Case {
  const char* name;
  bool signal;
  unsigned ra_column;
  std::vector<Dwarf_Op> cfa;
  Kind ra_kind;
  std::vector<Dwarf_Op> ra;
  Kind rbp_kind;
  std::vector<Dwarf_Op> rbp;
  Rule want;
  Unsupported why;
};

TEST(UnwindMapRule, MapsEachKindOfRule) {
  const auto ret = AtCfa(-8);
  const Rule unsupported{FS_CFA_UNSUPPORTED, FS_RBP_SAME, 0, 0};
  const std::vector<Case> cases = {
      {"entry: CFA=rsp+8",
       false,
       16,
       DefCfa(7, 8),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       {FS_CFA_RSP, FS_RBP_SAME, 0, 8},
       Unsupported::kNo},
      {"rbp undefined is same",
       false,
       16,
       DefCfa(7, 16),
       Kind::kOps,
       ret,
       Kind::kUndefined,
       {},
       {FS_CFA_RSP, FS_RBP_SAME, 0, 16},
       Unsupported::kNo},
      {"frame pointer",
       false,
       16,
       DefCfa(6, 16),
       Kind::kOps,
       ret,
       Kind::kOps,
       AtCfa(-16),
       {FS_CFA_RBP, FS_RBP_AT_CFA, -16, 16},
       Unsupported::kNo},
      {"CFA expression DW_OP_breg7 N",
       false,
       16,
       {Op(DW_OP_breg7, 24)},
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       {FS_CFA_RSP, FS_RBP_SAME, 0, 24},
       Unsupported::kNo},
      {"plt lit11",
       false,
       16,
       Plt(DW_OP_lit11),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       {FS_CFA_PLT, FS_RBP_SAME, 0, 11},
       Unsupported::kNo},
      {"plt lit9 (IBT)",
       false,
       16,
       Plt(DW_OP_lit9),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       {FS_CFA_PLT, FS_RBP_SAME, 0, 9},
       Unsupported::kNo},
      {"signal frame",
       true,
       16,
       {},
       Kind::kUndefined,
       {},
       Kind::kUndefined,
       {},
       {FS_CFA_SIGNAL, FS_RBP_SAME, 0, 0},
       Unsupported::kNo},
      {"ra undefined: end",
       false,
       16,
       DefCfa(7, 8),
       Kind::kUndefined,
       {},
       Kind::kSameValue,
       {},
       {FS_CFA_END, FS_RBP_SAME, 0, 0},
       Unsupported::kNo},
      {"CFA=r10+0 (realigned stack)",
       false,
       16,
       DefCfa(10, 0),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kCfaRegister},
      {"DRAP: CFA=*(rbp-8)",
       false,
       16,
       {Op(DW_OP_breg6, static_cast<uint64_t>(-8)), Op(DW_OP_deref)},
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kCfaExpression},
      {"plt with another base",
       false,
       16,
       [] {
         auto v = Plt(DW_OP_lit11);
         v[0].number = 16;
         return v;
       }(),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kCfaExpression},
      {"no CFA",
       false,
       16,
       {},
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kCfaUndefined},
      {"CFA offset past int32",
       false,
       16,
       DefCfa(7, int64_t{1} << 33),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kCfaOffset},
      {"ra same value",
       false,
       16,
       DefCfa(7, 8),
       Kind::kSameValue,
       {},
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kRaRule},
      {"ra at CFA-16",
       false,
       16,
       DefCfa(7, 8),
       Kind::kOps,
       AtCfa(-16),
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kRaRule},
      {"ra column not 16",
       false,
       15,
       DefCfa(7, 8),
       Kind::kOps,
       ret,
       Kind::kSameValue,
       {},
       unsupported,
       Unsupported::kRaRule},
      {"rbp in a register",
       false,
       16,
       DefCfa(7, 8),
       Kind::kOps,
       ret,
       Kind::kOps,
       {Op(DW_OP_regx, 3)},
       unsupported,
       Unsupported::kRbpRule},
      {"rbp val_offset",
       false,
       16,
       DefCfa(7, 8),
       Kind::kOps,
       ret,
       Kind::kOps,
       {Op(DW_OP_call_frame_cfa), Op(DW_OP_plus_uconst, static_cast<uint64_t>(-16)),
        Op(DW_OP_stack_value)},
       unsupported,
       Unsupported::kRbpRule},
      {"rbp offset past int16", false, 16, DefCfa(7, 8), Kind::kOps, ret, Kind::kOps, AtCfa(-40000),
       unsupported, Unsupported::kRbpRule},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const MappedRule m =
        MapRule(c.signal, c.ra_column, c.cfa, {c.ra_kind, c.ra}, {c.rbp_kind, c.rbp});
    EXPECT_EQ(m.rule.cfa_kind, c.want.cfa_kind);
    EXPECT_EQ(m.rule.cfa_offset, c.want.cfa_offset);
    EXPECT_EQ(m.rule.rbp_kind, c.want.rbp_kind);
    EXPECT_EQ(m.rule.rbp_offset, c.want.rbp_offset);
    EXPECT_EQ(m.why, c.why);
  }
}

TEST(UnwindCfaVet, RefusesHugeRegistersAndDeepRememberState) {
  using Bytes = std::vector<uint8_t>;
  // def_cfa_offset 16; offset r6 at cfa-16 (0x86 0x02); def_cfa_register r6; remember; restore.
  EXPECT_TRUE(CfaInstructionsSafe(Bytes{0x0e, 0x10, 0x86, 0x02, 0x0d, 0x06, 0x0a, 0x0b}, 8));
  // The PLT expression block and a set_loc with a 4-byte operand.
  EXPECT_TRUE(CfaInstructionsSafe(Bytes{0x0f, 0x02, 0x77, 0x08, 0x01, 1, 2, 3, 4}, 4));
  // offset_extended r(2^27): what made libdw allocate 1.8 GB.
  EXPECT_FALSE(CfaInstructionsSafe(Bytes{0x05, 0x80, 0x80, 0x80, 0x40, 0x01}, 8));
  EXPECT_FALSE(CfaInstructionsSafe(Bytes{0x07, 0x80, 0x02}, 8));  // undefined r256
  EXPECT_FALSE(CfaInstructionsSafe(Bytes(65, 0x0a), 8));          // 65 nested remember_state
  EXPECT_TRUE(CfaInstructionsSafe(Bytes(64, 0x0a), 8));
  EXPECT_FALSE(CfaInstructionsSafe(Bytes{0x0f, 0x05, 0x77}, 8));  // block past the end
  EXPECT_FALSE(CfaInstructionsSafe(Bytes{0x3f}, 8));              // unknown opcode
}

Rule Rsp(int32_t off) { return {FS_CFA_RSP, FS_RBP_SAME, 0, off}; }

TEST(UnwindIntervals, ClipKeepsOnlyExecutableSegments) {
  ErrorLog log;
  auto out = ClipToSegments({{0x10, 0x30, Rsp(8)}, {0x40, 0x50, Rsp(16)}, {0x90, 0x99, Rsp(8)}},
                            {{0x20, 0x45}, {0x48, 0x60}}, &log);
  ASSERT_EQ(out.size(), 3u);  // [0x90, 0x99) is in no segment
  EXPECT_EQ(out[0].start, 0x20u);
  EXPECT_EQ(out[0].end, 0x30u);
  EXPECT_EQ(out[1].start, 0x40u);
  EXPECT_EQ(out[1].end, 0x45u);
  EXPECT_EQ(out[2].start, 0x48u);
  EXPECT_EQ(out[2].end, 0x50u);
  EXPECT_EQ(log.count, 3u);
}

TEST(UnwindIntervals, SubtractLeavesUncoveredParts) {
  auto out = SubtractCovered({{0x0, 0x100, Rsp(8)}}, {{0x10, 0x20, Rsp(16)}, {0x80, 0x120, {}}});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].start, 0x0u);
  EXPECT_EQ(out[0].end, 0x10u);
  EXPECT_EQ(out[1].start, 0x20u);
  EXPECT_EQ(out[1].end, 0x80u);
}

TEST(UnwindIntervals, AssembleFillsGapsAndMergesEqualRules) {
  uint64_t base = 0;
  uint64_t end = 0;
  std::vector<fs_unwind_row> rows;
  ASSERT_TRUE(AssembleRows({{0x1000, 0x1004, Rsp(8)},
                            {0x1004, 0x1010, Rsp(8)},
                            {0x1010, 0x1020, Rsp(16)},
                            {0x1030, 0x1040, Rsp(16)}},
                           &base, &end, &rows)
                  .ok());
  EXPECT_EQ(base, 0x1000u);
  EXPECT_EQ(end, 0x1040u);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].pc, 0u);
  EXPECT_EQ(rows[1].pc, 0x10u);
  EXPECT_EQ(rows[1].cfa_offset, 16);
  EXPECT_EQ(rows[2].pc, 0x20u);
  EXPECT_EQ(rows[2].cfa_kind, FS_CFA_NONE);
  EXPECT_EQ(rows[3].pc, 0x30u);
  EXPECT_EQ(rows[3].cfa_kind, FS_CFA_RSP);
}

TEST(UnwindIntervals, AssembleRejectsMoreThan32BitsOfPcs) {
  uint64_t base = 0;
  uint64_t end = 0;
  std::vector<fs_unwind_row> rows;
  EXPECT_FALSE(AssembleRows({{0x1000, 0x2000, Rsp(8)}, {0x200000000, 0x200000010, Rsp(8)}}, &base,
                            &end, &rows)
                   .ok());
}

}  // namespace
}  // namespace flamestream::unwind
