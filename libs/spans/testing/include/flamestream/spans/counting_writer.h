// A SpanWriter for the receiver tests: counts the spans written to it and acknowledges every
// batch at once, as a Kafka sink whose broker never fails would.
//
//   spans::testing::CountingSpanWriter sink;
//   SpanRouter router(SpanRouterConfig{.default_cluster = "c1"}, sink, metrics);
//   ... send 3 spans to the receivers ...
//   EXPECT_EQ(sink.spans(), 3u);
#pragma once

#include <cstddef>
#include <mutex>
#include <string>

#include "flamestream/common/status.h"
#include "flamestream/spans/router.h"

namespace flamestream::spans::testing {

class CountingSpanWriter : public SpanWriter {
 public:
  void Write(const std::string& /*key*/, v1::SpanBatch batch, Done done) override {
    {
      std::lock_guard lock(mu_);
      spans_ += static_cast<size_t>(batch.spans_size());
    }
    done(OkStatus());
  }
  // Spans written so far (Write may run on any receiver thread).
  size_t spans() {
    std::lock_guard lock(mu_);
    return spans_;
  }

 private:
  std::mutex mu_;
  size_t spans_ = 0;
};

}  // namespace flamestream::spans::testing
