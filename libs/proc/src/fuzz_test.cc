// Fuzz-ish: every parser gets truncations and byte flips of valid input plus random bytes, and
// must return (an error or a value) without crashing. Run under the asan preset for teeth.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "flamestream/proc/cgroup.h"
#include "flamestream/proc/kallsyms.h"
#include "flamestream/proc/maps.h"
#include "flamestream/proc/process.h"

namespace flamestream::proc {
namespace {

const std::vector<std::string>& Seeds() {
  static const std::vector<std::string> seeds = {
      "55d0c0de0000-55d0c0de2000 r-xp 00001000 fd:01 1234567   /usr/bin/x\n"
      "7ffd1000-7ffd3000 r-xp 00000000 00:00 0   [vdso]\n",
      "42 (a) b (c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n",
      "Name:\tworker\nTgid:\t4711\nPid:\t4712\nPPid:\t4700\nNStgid:\t4711\t1\nNSpid:\t4712\t2\n",
      "0::/kubepods.slice/kubepods-pod0a1b2c3d_0000_1111_2222_333344445555.slice/"
      "cri-containerd-3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e.scope\n"
      "12:memory:/docker/3f1c2b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e\n",
      "ffffffff81000000 T _stext\nffffffffc0a01000 t mod_fn\t[nf_tables]\n",
  };
  return seeds;
}

// Runs every parser on `s`; returns how many accepted it (each seed is valid for one of them).
int RunAll(const std::string& s) {
  int accepted = 0;
  if (ParsedMaps m = ParseMaps(s); !m.mappings.empty() && m.malformed_lines == 0) ++accepted;
  (void)ParseMapsLine(s);
  if (ParseStatStartTicks(s).ok()) ++accepted;
  if (ParseStatus(s).ok()) ++accepted;
  if (ParseCgroup(s).version != 0) ++accepted;
  (void)ParseCgroupPath(s);
  if (Result<KernelSymbols> ks = KernelSymbols::Parse(s); ks.ok()) {
    (void)ks->Name(0xffffffff81000010);
    ++accepted;
  }
  return accepted;
}

TEST(ProcParsersFuzz, TruncationsNeverCrash) {
  for (const std::string& seed : Seeds()) {
    SCOPED_TRACE(seed);
    // The untouched seed is valid input for (at least) its own parser.
    EXPECT_GE(RunAll(seed), 1);
    for (size_t n = 0; n < seed.size(); ++n) {
      RunAll(seed.substr(0, n));
    }
  }
}

TEST(ProcParsersFuzz, ByteFlipsAndRandomInputNeverCrash) {
  std::mt19937 rng(12345);
  const std::string alphabet = "0123456789abcdef-: ()\t\n/[]xrwp_.@\xff";
  for (const std::string& seed : Seeds()) {
    for (int round = 0; round < 2000; ++round) {
      std::string s = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng() % s.size();
        switch (rng() % 3) {
          case 0:
            s[at] = alphabet[rng() % alphabet.size()];
            break;
          case 1:
            s.erase(at, 1 + rng() % 8);
            break;
          default:
            s.insert(at, std::string(1 + rng() % 4, alphabet[rng() % alphabet.size()]));
        }
        if (s.empty()) s = "x";
      }
      RunAll(s);
    }
  }
  int random_accepted = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    random_accepted += RunAll(s) > 0 ? 1 : 0;
  }
  // Random bytes are almost never a valid /proc file.
  EXPECT_LT(random_accepted, 100);
}

}  // namespace
}  // namespace flamestream::proc
