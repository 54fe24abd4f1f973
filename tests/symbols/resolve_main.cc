// fs-symbols-resolve: `flamestream-symbolizer resolve` as a standalone tool (see resolve_mode.h).
#include "resolve_mode.h"

int main(int argc, char** argv) { return flamestream::symbolizer::RunResolve(argc, argv); }
