/* Corpus: a C non-PIE executable with static inline chains, recursion and a cold path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vec {
  int *data;
  size_t len;
};

static inline int square(int x) { return x * x; }
static inline int poly(int x) { return square(x) + 3 * x + 1; }

static int sum_poly(const struct vec *v) {
  int s = 0;
  for (size_t i = 0; i < v->len; i++) s += poly(v->data[i]);
  return s;
}

__attribute__((noinline)) static unsigned long fib(unsigned n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

__attribute__((cold, noinline)) static void die(const char *msg) {
  fprintf(stderr, "fatal: %s\n", msg);
  exit(2);
}

static int parse(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end != '\0') die("not a number");
  return (int)v;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? parse(argv[1]) : 12;
  struct vec v = {malloc(sizeof(int) * (size_t)n), (size_t)n};
  if (v.data == NULL) die("oom");
  for (int i = 0; i < n; i++) v.data[i] = i;
  printf("%d %lu %zu\n", sum_poly(&v), fib((unsigned)n), strlen(argv[0]));
  free(v.data);
  return 0;
}
