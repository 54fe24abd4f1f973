// Names of every Flamestream topic, in one place (services, the dev broker and tests agree).
//
//   producer->Produce(kafka::topics::kSamplesRaw, key, bytes);
//   dlq.Write(msg, status);                       // -> "flamestream.samples.raw.v1.dlq"
//   for (const std::string& t : kafka::topics::All()) CreateTopic(t, 8);
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flamestream::kafka::topics {

inline constexpr std::string_view kSamplesRaw = "flamestream.samples.raw.v1";
inline constexpr std::string_view kProcesses = "flamestream.processes.v1";  // compacted
inline constexpr std::string_view kSamplesSymbolized = "flamestream.samples.symbolized.v1";
inline constexpr std::string_view kSpansKeyed = "flamestream.spans.keyed.v1";
inline constexpr std::string_view kSamplesCorrelated = "flamestream.samples.correlated.v1";
// Written by the OpenTelemetry Collector's Kafka exporter (its default topic name).
inline constexpr std::string_view kOtlpSpans = "otlp_spans";

inline constexpr std::string_view kReplaySuffix = ".replay";
inline constexpr std::string_view kDlqSuffix = ".dlq";

// Header on symbolized (and so on correlated) sample batches: the symbolizer's symbol epoch,
// set on replayed records (docs/WIRE-FORMATS.md §7).
inline constexpr std::string_view kHeaderSymbolEpoch = "symbol-epoch";

// "<topic>.dlq": where undecodable input of `topic` goes.
std::string Dlq(std::string_view topic);
// "<topic>.replay": the replay run's copy of a stage's output topic.
std::string Replay(std::string_view topic);

// The pipeline topics plus the replay variants of symbolized and correlated.
std::vector<std::string> Pipeline();
// Pipeline() and each one's DLQ: everything a fresh cluster needs.
std::vector<std::string> All();

}  // namespace flamestream::kafka::topics
