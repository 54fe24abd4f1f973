// OTLP protobuf decoding: the limit scan of the wire bytes before the parse, and the diagnosis
// of a buffer the parser rejected.
#include <google/protobuf/descriptor.h>

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "decode_internal.h"
#include "flamestream/spans/decode.h"

namespace flamestream::spans {
namespace {

using internal::LimitError;
using opentelemetry::proto::common::v1::AnyValue;
using opentelemetry::proto::common::v1::KeyValue;
using opentelemetry::proto::trace::v1::Span;

// ---------------------------------------------------------------------------------------------
// Protobuf: diagnosis of a buffer ParseFromArray rejected.
// ---------------------------------------------------------------------------------------------

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

class WireDiagnoser {
 public:
  explicit WireDiagnoser(std::string_view all) : all_(all) {}

  // Walks `d`'s message in [begin, end) of the buffer; returns the first problem, or "".
  std::string Walk(const google::protobuf::Descriptor* d, size_t begin, size_t end,
                   const std::string& path, int depth) {
    if (depth > 100) return fmt::format("{}: nested too deeply", Name(path, d));
    std::map<int, int> seen;  // field number -> occurrences so far (repeated index)
    size_t pos = begin;
    while (pos < end) {
      const size_t tag_at = pos;
      uint64_t tag = 0;
      if (!Varint(pos, end, &tag)) {
        return fmt::format("{}: truncated or overlong tag varint at byte {}", Name(path, d),
                           tag_at);
      }
      const uint64_t number = tag >> 3;
      const int wire = static_cast<int>(tag & 7);
      if (number == 0 || number > 536870911) {
        return fmt::format("{}: invalid field number {} at byte {}", Name(path, d), number, tag_at);
      }
      const google::protobuf::FieldDescriptor* f =
          d == nullptr ? nullptr : d->FindFieldByNumber(static_cast<int>(number));
      std::string fpath = FieldPath(path, d, f, static_cast<int>(number), seen);
      switch (wire) {
        case 0: {
          uint64_t v = 0;
          const size_t at = pos;
          if (!Varint(pos, end, &v)) {
            return fmt::format("{}: truncated varint at byte {}", fpath, at);
          }
          break;
        }
        case 1:
          if (end - pos < 8) return fmt::format("{}: truncated fixed64 at byte {}", fpath, pos);
          pos += 8;
          break;
        case 5:
          if (end - pos < 4) return fmt::format("{}: truncated fixed32 at byte {}", fpath, pos);
          pos += 4;
          break;
        case 2: {
          const size_t len_at = pos;
          uint64_t len = 0;
          if (!Varint(pos, end, &len)) {
            return fmt::format("{}: truncated length at byte {}", fpath, len_at);
          }
          if (len > end - pos) {
            return fmt::format("{}: length {} at byte {} exceeds the {} bytes left", fpath, len,
                               len_at, end - pos);
          }
          if (f != nullptr && f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
            std::string inner = Walk(f->message_type(), pos, pos + len, fpath, depth + 1);
            if (!inner.empty()) return inner;
          } else if (f != nullptr && f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
                     !ValidUtf8(all_.substr(pos, len))) {
            return fmt::format("{}: string at byte {} is not valid UTF-8", fpath, pos);
          }
          pos += len;
          break;
        }
        case 3:
        case 4:
          return fmt::format("{}: group wire type {} at byte {} (not used by OTLP)", fpath, wire,
                             tag_at);
        default:
          return fmt::format("{}: invalid wire type {} at byte {}", fpath, wire, tag_at);
      }
    }
    return "";
  }

 private:
  static std::string Name(const std::string& path, const google::protobuf::Descriptor* d) {
    if (!path.empty()) return path;
    return d == nullptr ? "message" : d->name();
  }

  static std::string FieldPath(const std::string& path, const google::protobuf::Descriptor* d,
                               const google::protobuf::FieldDescriptor* f, int number,
                               std::map<int, int>& seen) {
    std::string prefix = path.empty() ? "" : path + ".";
    if (f == nullptr) {
      return fmt::format("{}<unknown field {} of {}>", prefix, number,
                         d == nullptr ? "?" : d->name());
    }
    if (f->is_repeated()) {
      return fmt::format("{}{}[{}]", prefix, f->name(), seen[number]++);
    }
    return prefix + f->name();
  }

  bool Varint(size_t& pos, size_t end, uint64_t* out) const {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) return false;
      const auto b = static_cast<uint8_t>(all_[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;
  }

  std::string_view all_;
};

// ---------------------------------------------------------------------------------------------
// Limits, protobuf: a scan of the wire bytes before ParseFromArray. It allocates nothing but
// the path it is at, and stops at the first limit crossed. Structural errors end the scan
// quietly: the parser then fails at the same place (everything before it was within limits)
// and WireDiagnoser names it.
// ---------------------------------------------------------------------------------------------

class LimitScanner {
 public:
  LimitScanner(std::string_view all, const DecodeLimits& limits) : all_(all), limits_(limits) {}

  Status Scan(std::string* reason) {
    Status st = Walk(otlp::ExportTraceServiceRequest::descriptor(), 0, all_.size(), 0);
    if (!st.ok()) *reason = reason_;
    return st;
  }

 private:
  struct Step {
    const google::protobuf::FieldDescriptor* field;
    uint64_t index;
  };

  std::string Path(const google::protobuf::FieldDescriptor* f, uint64_t index, bool indexed) const {
    std::string out = Here();
    out += f->name();
    if (indexed) out += fmt::format("[{}]", index);
    return out;
  }

  // The path of the message being walked, with a trailing '.' ("" at the top).
  std::string Here() const {
    std::string out;
    for (const Step& s : path_) {
      out += s.field->name();
      if (s.field->is_repeated()) out += fmt::format("[{}]", s.index);
      out += '.';
    }
    return out;
  }

  Status Refuse(std::string reason, std::string path, std::string what) {
    reason_ = std::move(reason);
    return LimitError(path, what);
  }

  Status Walk(const google::protobuf::Descriptor* d, size_t begin, size_t end, int depth) {
    if (depth > 100) return OkStatus();  // the parser refuses it
    // Occurrences of each repeated field in this message (OTLP field numbers are < 32).
    std::array<uint64_t, 32> seen{};
    size_t pos = begin;
    while (pos < end) {
      uint64_t tag = 0;
      if (!Varint(pos, end, &tag)) return OkStatus();
      const uint64_t number = tag >> 3;
      const int wire = static_cast<int>(tag & 7);
      const google::protobuf::FieldDescriptor* f =
          number == 0 || number > 536870911 ? nullptr
                                            : d->FindFieldByNumber(static_cast<int>(number));
      size_t len = 0;
      switch (wire) {
        case 0: {
          uint64_t v = 0;
          if (!Varint(pos, end, &v)) return OkStatus();
          break;
        }
        case 1:
          len = 8;
          break;
        case 5:
          len = 4;
          break;
        case 2: {
          uint64_t l = 0;
          if (!Varint(pos, end, &l) || l > end - pos) return OkStatus();
          len = static_cast<size_t>(l);
          break;
        }
        default:
          return OkStatus();
      }
      if (end - pos < len) return OkStatus();
      if (f != nullptr && wire != WireTypeOf(f)) f = nullptr;  // the parser keeps it as unknown
      if (f == nullptr) {
        // Kept by the parser in the unknown field set: one more thing materialized.
        if (limits_.max_elements != 0 && ++elements_ > limits_.max_elements) {
          return Refuse("too_many_elements",
                        fmt::format("{}<unknown field {} of {}>", Here(), number, d->name()),
                        ElementsWhat());
        }
      } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
        uint64_t index = 0;
        if (f->is_repeated()) {
          index = number < seen.size() ? seen[number]++ : 0;
          const google::protobuf::Descriptor* m = f->message_type();
          if (m == Span::descriptor() && limits_.max_spans != 0 && ++spans_ > limits_.max_spans) {
            return Refuse("too_many_spans", Path(f, index, true),
                          fmt::format("more than {} spans in one request (max_spans_per_request)",
                                      limits_.max_spans));
          }
          if ((m == KeyValue::descriptor() || m == AnyValue::descriptor()) &&
              limits_.max_attributes != 0 && index >= limits_.max_attributes) {
            return Refuse("too_many_attributes", Path(f, index, true),
                          fmt::format("more than {} {} (max_attributes)", limits_.max_attributes,
                                      m == KeyValue::descriptor() ? "attributes in one list"
                                                                  : "values in one array"));
          }
          if (limits_.max_elements != 0 && ++elements_ > limits_.max_elements) {
            return Refuse("too_many_elements", Path(f, index, true), ElementsWhat());
          }
        }
        path_.push_back({f, index});
        Status st = Walk(f->message_type(), pos, pos + len, depth + 1);
        path_.pop_back();
        if (!st.ok()) return st;
      } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
                 (f->name() == "name" || f->name() == "key") && limits_.max_name_length != 0 &&
                 len > limits_.max_name_length) {
        return Refuse("name_too_long", Path(f, 0, false),
                      fmt::format("{} bytes, longer than {} (max_name_length)", len,
                                  limits_.max_name_length));
      }
      pos += len;
    }
    return OkStatus();
  }

  static int WireTypeOf(const google::protobuf::FieldDescriptor* f) {
    using FD = google::protobuf::FieldDescriptor;
    switch (f->type()) {
      case FD::TYPE_MESSAGE:
      case FD::TYPE_STRING:
      case FD::TYPE_BYTES:
        return 2;
      case FD::TYPE_DOUBLE:
      case FD::TYPE_FIXED64:
      case FD::TYPE_SFIXED64:
        return 1;
      case FD::TYPE_FLOAT:
      case FD::TYPE_FIXED32:
      case FD::TYPE_SFIXED32:
        return 5;
      default:
        return 0;
    }
  }

  std::string ElementsWhat() const {
    return fmt::format(
        "more than {} spans, events, links, attributes and values in one request "
        "(max_elements_per_request)",
        limits_.max_elements);
  }

  bool Varint(size_t& pos, size_t end, uint64_t* out) const {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) return false;
      const auto b = static_cast<uint8_t>(all_[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;
  }

  std::string_view all_;
  const DecodeLimits& limits_;
  std::vector<Step> path_;
  uint64_t spans_ = 0;
  uint64_t elements_ = 0;
  std::string reason_;
};

}  // namespace

Result<otlp::ExportTraceServiceRequest> DecodeProtobuf(std::string_view bytes,
                                                       const DecodeLimits& limits,
                                                       DecodeStats* stats) {
  DecodeStats local;
  if (stats == nullptr) stats = &local;
  otlp::ExportTraceServiceRequest req;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    stats->refusal = "invalid";
    return InvalidArgument("protobuf body of {} bytes is too large", bytes.size());
  }
  if (Status st = LimitScanner(bytes, limits).Scan(&stats->refusal); !st.ok()) return st;
  if (req.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    internal::Truncate(&req, limits, stats);
    return req;
  }
  WireDiagnoser diag(bytes);
  std::string where =
      diag.Walk(otlp::ExportTraceServiceRequest::descriptor(), 0, bytes.size(), "", 0);
  if (where.empty()) {
    where = "the message does not parse (no structural error found)";
  }
  stats->refusal = "invalid";
  return InvalidArgument("invalid ExportTraceServiceRequest protobuf: {}", where);
}

}  // namespace flamestream::spans
