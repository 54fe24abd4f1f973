// Status and Result<T>: how every Flamestream library reports failure.
//
//   Result<Batch> Decode(std::string_view bytes) {
//     if (bytes.empty()) return InvalidArgument("empty record");
//     ...
//     return batch;
//   }
//
//   Status Process(std::string_view bytes) {
//     FS_ASSIGN_OR_RETURN(Batch batch, Decode(bytes));
//     FS_RETURN_IF_ERROR(Store(batch));
//     return OkStatus();
//   }
//
// Result<T> is shaped like C++23 std::expected<T, Status> (ok(), value(), operator*, error()),
// so it can be swapped for it when the toolchain has it. Both types are [[nodiscard]]: a
// dropped result is a compile warning (an error in CI). No exception crosses a library API;
// exceptions from third-party code are caught at the boundary and become a Status.
// (We do not use absl::Status: Debian's abseil is built with its own string_view type, which
// does not convert from std::string_view.)
#pragma once

#include <fmt/format.h>

#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace flamestream {

enum class StatusCode {
  kOk = 0,
  kCancelled,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kResourceExhausted,
  kFailedPrecondition,
  kOutOfRange,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDataLoss,
  kDeadlineExceeded,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  [[nodiscard]] bool ok() const { return code_ == StatusCode::kOk; }
  [[nodiscard]] StatusCode code() const { return code_; }
  [[nodiscard]] const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message", or "OK".
  [[nodiscard]] std::string ToString() const;
  // Returns a copy whose message is "<context>: <message>".
  [[nodiscard]] Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return {}; }

inline std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

// Builders: InvalidArgument("key {} expects a duration", key).
#define FS_DEFINE_STATUS_BUILDER_(Name, Code)                                          \
  template <typename... Args>                                                          \
  Status Name(fmt::format_string<Args...> format, Args&&... args) {                    \
    return Status(StatusCode::Code, fmt::format(format, std::forward<Args>(args)...)); \
  }
FS_DEFINE_STATUS_BUILDER_(CancelledError, kCancelled)
FS_DEFINE_STATUS_BUILDER_(InvalidArgument, kInvalidArgument)
FS_DEFINE_STATUS_BUILDER_(NotFound, kNotFound)
FS_DEFINE_STATUS_BUILDER_(AlreadyExists, kAlreadyExists)
FS_DEFINE_STATUS_BUILDER_(PermissionDenied, kPermissionDenied)
FS_DEFINE_STATUS_BUILDER_(ResourceExhausted, kResourceExhausted)
FS_DEFINE_STATUS_BUILDER_(FailedPrecondition, kFailedPrecondition)
FS_DEFINE_STATUS_BUILDER_(OutOfRange, kOutOfRange)
FS_DEFINE_STATUS_BUILDER_(Unimplemented, kUnimplemented)
FS_DEFINE_STATUS_BUILDER_(InternalError, kInternal)
FS_DEFINE_STATUS_BUILDER_(Unavailable, kUnavailable)
FS_DEFINE_STATUS_BUILDER_(DataLoss, kDataLoss)
FS_DEFINE_STATUS_BUILDER_(DeadlineExceeded, kDeadlineExceeded)
#undef FS_DEFINE_STATUS_BUILDER_

// A status from errno: ErrnoError(errno, "open {}", path) -> "open /x: No such file or directory".
Status ErrnoError(int err, std::string_view what);

template <typename T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(const T& value) : v_(value) {}            // NOLINT(google-explicit-constructor)
  Result(T&& value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) {
      v_ = Status(StatusCode::kInternal, "Result constructed from an OK status");
    }
  }
  // Implicit on purpose (return a T from a Result<T> function); the constraints keep it off
  // Result's own copy and move.
  // NOLINTBEGIN(google-explicit-constructor,bugprone-forwarding-reference-overload)
  template <typename U>
  requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, Status> &&
           !std::is_same_v<std::decay_t<U>, T> && !std::is_same_v<std::decay_t<U>, Result>)
      Result(U&& value)
      : v_(T(std::forward<U>(value))) {}
  // NOLINTEND(google-explicit-constructor,bugprone-forwarding-reference-overload)

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  [[nodiscard]] const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  [[nodiscard]] const Status& error() const { return std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace flamestream

#define FS_STATUS_CONCAT_INNER_(a, b) a##b
#define FS_STATUS_CONCAT_(a, b) FS_STATUS_CONCAT_INNER_(a, b)

// Returns from the calling function when `expr` yields a non-OK Status.
#define FS_RETURN_IF_ERROR(expr)                                       \
  do {                                                                 \
    if (::flamestream::Status fs_status_ = (expr); !fs_status_.ok()) { \
      return fs_status_;                                               \
    }                                                                  \
  } while (false)

// Declares `lhs` from a Result<T> expression, or returns its error status.
#define FS_ASSIGN_OR_RETURN(lhs, expr) \
  FS_ASSIGN_OR_RETURN_IMPL_(FS_STATUS_CONCAT_(fs_result_, __LINE__), lhs, expr)

// `tmp` and `lhs` are a name and a declaration, which parentheses would break.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define FS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) {                                \
    return tmp.error();                           \
  }                                               \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

template <>
struct fmt::formatter<flamestream::Status> : fmt::formatter<std::string> {
  auto format(const flamestream::Status& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.ToString(), ctx);
  }
};
