// flamestream-dwarf-worker: the process the Symbolizer parses DWARF in (see debug_module.h).
// Started by the Symbolizer with its socket on fd 3; not meant to be run by hand.
#include <cstdlib>
#include <cstring>

#include "dwarf_worker.h"

int main(int argc, char** argv) {
  int fd = 3;
  if (argc > 1 && std::strncmp(argv[1], "--fd=", 5) == 0) {
    fd = std::atoi(argv[1] + 5);
  }
  flamestream::symbols::RunDwarfWorker(fd);
}
