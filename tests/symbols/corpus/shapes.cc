#include "shapes.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace geo {
namespace {

class Circle final : public Shape {
 public:
  explicit Circle(double r) : r_(r) {}
  double Area() const override { return M_PI * r_ * r_; }
  std::string Name() const override { return "circle"; }

 private:
  double r_;
};

class Rect final : public Shape {
 public:
  Rect(double w, double h) : w_(w), h_(h) {}
  double Area() const override { return w_ * h_; }
  std::string Name() const override { return "rect"; }

 private:
  double w_, h_;
};

template <typename Acc, typename Fn>
Acc Fold(const std::vector<std::unique_ptr<Shape>>& v, Acc init, Fn fn) {
  for (const auto& s : v) init = fn(init, *s);
  return init;
}

}  // namespace

std::unique_ptr<Shape> MakeCircle(double r) { return std::make_unique<Circle>(r); }
std::unique_ptr<Shape> MakeRect(double w, double h) { return std::make_unique<Rect>(w, h); }

double TotalArea(const std::vector<std::unique_ptr<Shape>>& shapes) {
  return Fold(shapes, 0.0, [](double acc, const Shape& s) {
    return acc + (s.Name().size() > 3 ? s.Area() : std::sqrt(s.Area()));
  });
}

long DotSum(const std::vector<Point<long>>& pts) {
  std::vector<long> dots;
  for (size_t i = 1; i < pts.size(); ++i) dots.push_back(pts[i].Dot(pts[i - 1]));
  std::sort(dots.begin(), dots.end(), [](long a, long b) { return a > b; });
  return std::accumulate(dots.begin(), dots.end(), 0L);
}

}  // namespace geo
