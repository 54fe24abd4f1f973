// What the linked librdkafka can do: its version and `builtin.features` (compression codecs,
// ssl, sasl_plain, sasl_scram, sasl_gssapi, sasl_oauthbearer, ...), for startup logs and for
// tests that security settings are usable with this build.
//
//   std::vector<std::string> f = kafka::BuiltinFeatures();   // {"gzip", "snappy", "ssl", ...}
//   std::string v = kafka::LibrdkafkaVersion();             // "2.0.2"
#pragma once

#include <string>
#include <vector>

namespace flamestream::kafka {

std::vector<std::string> BuiltinFeatures();
std::string LibrdkafkaVersion();

}  // namespace flamestream::kafka
