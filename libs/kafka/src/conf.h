// Internal: building librdkafka confs from property maps.
#pragma once

#include <string>

#include "flamestream/common/status.h"
#include "flamestream/kafka/handles.h"
#include "flamestream/kafka/types.h"

namespace flamestream::kafka::internal {

// A new conf with every property set, or InvalidArgument naming the bad property.
Result<KafkaConf> MakeConf(const Properties& props);

// Routes librdkafka's log lines to flamestream::log.
void SetLogger(rd_kafka_conf_t* conf);

// The status code for a librdkafka error: DeadlineExceeded for timeouts, ResourceExhausted for a
// full queue, InvalidArgument, OutOfRange (too large), FailedPrecondition (state, fatal),
// Unavailable for everything else (librdkafka or the cluster may recover).
StatusCode ErrCode(rd_kafka_resp_err_t err);
// "<what>: <librdkafka's text for err>" with ErrCode(err).
Status ErrStatus(rd_kafka_resp_err_t err, std::string_view what);

}  // namespace flamestream::kafka::internal
