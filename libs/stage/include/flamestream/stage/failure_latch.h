// Keeps the first error reported from another thread (a producer's delivery callbacks), so the
// stage loop can stop on it instead of skipping an input.
//
//   FailureLatch failure;
//   producer->Produce(..., [&](const kafka::DeliveryReport& r) {
//     if (!r.status.ok()) failure.Set(r.status.WithContext("delivery failed"));
//   });
//   if (Status f = failure.Get(); !f.ok()) return f;   // on the loop thread
#pragma once

#include <mutex>

#include "flamestream/common/status.h"

namespace flamestream::stage {

class FailureLatch {
 public:
  // Records `s` unless an error is already recorded.
  void Set(const Status& s) {
    std::lock_guard lock(mu_);
    if (status_.ok()) {
      status_ = s;
    }
  }
  [[nodiscard]] Status Get() const {
    std::lock_guard lock(mu_);
    return status_;
  }

 private:
  mutable std::mutex mu_;
  Status status_;
};

}  // namespace flamestream::stage
