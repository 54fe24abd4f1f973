#include "flamestream/kafka/topics.h"

namespace flamestream::kafka::topics {

std::string Dlq(std::string_view topic) { return std::string(topic).append(kDlqSuffix); }
std::string Replay(std::string_view topic) { return std::string(topic).append(kReplaySuffix); }

std::vector<std::string> Pipeline() {
  return {
      std::string(kSamplesRaw),   std::string(kProcesses),         std::string(kSamplesSymbolized),
      std::string(kSpansKeyed),   std::string(kSamplesCorrelated), std::string(kOtlpSpans),
      Replay(kSamplesSymbolized), Replay(kSamplesCorrelated),
  };
}

std::vector<std::string> All() {
  std::vector<std::string> all = Pipeline();
  const size_t n = all.size();
  for (size_t i = 0; i < n; ++i) {
    all.push_back(Dlq(all[i]));
  }
  return all;
}

}  // namespace flamestream::kafka::topics
