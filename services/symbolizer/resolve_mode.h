// `flamestream-symbolizer resolve`: symbolize addresses read from stdin, printing exactly what
// `llvm-symbolizer --inlining --demangle` prints. Users script with it; the tests use it as the
// correctness harness against llvm-symbolizer.
//
//   $ printf '/usr/bin/app 0x1139\nbuildid:4f1e0c... 0x2040\n' | flamestream-symbolizer resolve
//   ns::Leaf(int)
//   /src/app.cc:12:7
//   main
//   /src/app.cc:40:3
//   <blank line>
//   ...
//
// Each line is `<PATH|buildid:HEX> <ADDRESS>`; ADDRESS is an ELF virtual address (0x... hex or
// decimal, as llvm-symbolizer takes it), or with --offsets a file offset, which is what
// profiling frames carry. No -1 is applied: pass return addresses already adjusted.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace flamestream::symbolizer {

// argv[0] is the subcommand ("resolve"); flags follow (see --help). Returns the exit code.
int RunResolve(int argc, char** argv);

// The same on explicit streams (tests).
int RunResolve(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
               std::ostream& err);

}  // namespace flamestream::symbolizer
