// What a stage writes for one input record, and which input it belongs to.
#pragma once

#include <cstdint>
#include <string>

#include "flamestream/kafka/types.h"

namespace flamestream::stage {

struct Output {
  std::string topic;
  std::string key;
  std::string value;
  kafka::Headers headers;
};

// The input record an output belongs to.
struct InputPosition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
};

}  // namespace flamestream::stage
