// Corpus: a shared library with namespaces, templates and virtual functions.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace geo {

class Shape {
 public:
  virtual ~Shape() = default;
  virtual double Area() const = 0;
  virtual std::string Name() const = 0;
};

template <typename T>
struct Point {
  T x;
  T y;
  T Dot(const Point& o) const { return x * o.x + y * o.y; }
};

std::unique_ptr<Shape> MakeCircle(double r);
std::unique_ptr<Shape> MakeRect(double w, double h);
double TotalArea(const std::vector<std::unique_ptr<Shape>>& shapes);
long DotSum(const std::vector<Point<long>>& pts);

}  // namespace geo
