// Corpus: a C++ PIE executable with inlining, templates, namespaces and lambdas. VARIANT makes
// distinct build ids for the stripped copies.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "shapes.h"

#ifndef VARIANT
#define VARIANT 0
#endif

namespace app {
namespace detail {

inline int Mix(int a, int b) { return (a * 31) ^ (b + VARIANT); }

template <int N>
struct Unroll {
  static int Run(int x) { return Mix(Unroll<N - 1>::Run(x), N); }
};
template <>
struct Unroll<0> {
  static int Run(int x) { return x; }
};

}  // namespace detail

template <typename T>
class Stats {
 public:
  void Add(T v) {
    sum_ += v;
    ++n_;
    if (v > max_) max_ = v;
  }
  T Mean() const { return n_ == 0 ? T{} : sum_ / static_cast<T>(n_); }
  T Max() const { return max_; }

 private:
  T sum_{};
  T max_{};
  long n_ = 0;
};

__attribute__((noinline)) int Leaf(int x) {
  int acc = 0;
  for (int i = 0; i < x; ++i) acc += detail::Unroll<4>::Run(i);
  return acc;
}

static inline int Middle(int x) { return Leaf(x) + Leaf(x / 2); }

__attribute__((noinline)) int Outer(int x) { return Middle(x) * 2 + Middle(x + 1); }

__attribute__((noinline)) double Summarize(const std::vector<double>& v) {
  Stats<double> s;
  for (double d : v) s.Add(d);
  return s.Mean() + s.Max();
}

__attribute__((noinline)) int Apply(const std::function<int(int)>& f, int v) { return f(v); }

std::map<std::string, int> Histogram(const std::vector<std::string>& words) {
  std::map<std::string, int> h;
  for (const auto& w : words) ++h[w];
  return h;
}

}  // namespace app

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 10;
  int total = app::Outer(n);
  auto twice = [n](int v) { return v * 2 + n; };
  total += app::Apply(twice, total);
  std::vector<double> vals;
  for (int i = 0; i < n; ++i) vals.push_back(i * 0.5);
  double mean = app::Summarize(vals);
  std::vector<std::unique_ptr<geo::Shape>> shapes;
  shapes.push_back(geo::MakeCircle(n));
  shapes.push_back(geo::MakeRect(n, 2));
  std::vector<geo::Point<long>> pts = {{1, 2}, {3, 4}, {5, n}};
  auto h = app::Histogram({"a", "b", "a", argv[0]});
  std::printf("%d %f %f %ld %zu\n", total, mean, geo::TotalArea(shapes), geo::DotSum(pts),
              h.size());
  return 0;
}
