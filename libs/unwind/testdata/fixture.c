/* A program with known CFI for libs/unwind's tests (built by libs/unwind/CMakeLists.txt with
 * several flag sets). Calls into libc go through the PLT; fs_fixture_frame keeps rbp as a
 * frame pointer even at -fomit-frame-pointer (its alloca makes the frame variable-sized). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) int fs_fixture_frame(int n) {
  char* buf = __builtin_alloca((size_t)n + 32);
  snprintf(buf, (size_t)n + 32, "%d", n);
  return atoi(buf) + (int)strlen(buf);
}

__attribute__((noinline)) int fs_fixture_leaf(int n) { return n * 3 + 1; }

int main(int argc, char** argv) {
  (void)argv;
  printf("%d\n", fs_fixture_frame(argc) + fs_fixture_leaf(argc));
  return 0;
}
