#include "flamestream/correlate/types.h"

#include <fmt/format.h>

namespace flamestream::correlate {
namespace {

uint64_t LoadBigEndian(std::string_view b) {
  uint64_t v = 0;
  for (char c : b) v = (v << 8) | static_cast<uint8_t>(c);
  return v;
}

void StoreBigEndian(uint64_t v, std::string& out) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

}  // namespace

TraceId TraceId::FromBytes(std::string_view bytes) {
  if (bytes.size() != 16) return {};
  return {.hi = LoadBigEndian(bytes.substr(0, 8)), .lo = LoadBigEndian(bytes.substr(8, 8))};
}

std::string TraceId::ToBytes() const {
  std::string out;
  out.reserve(16);
  StoreBigEndian(hi, out);
  StoreBigEndian(lo, out);
  return out;
}

std::string TraceId::ToHex() const { return fmt::format("{:016x}{:016x}", hi, lo); }

SpanId SpanId::FromBytes(std::string_view bytes) {
  if (bytes.size() != 8) return {};
  return {.value = LoadBigEndian(bytes)};
}

std::string SpanId::ToBytes() const {
  std::string out;
  out.reserve(8);
  StoreBigEndian(value, out);
  return out;
}

std::string SpanId::ToHex() const { return fmt::format("{:016x}", value); }

}  // namespace flamestream::correlate
