// flamestream-example-node-filter: the smallest complete stage, as a template for new ones.
// It copies the sample batches of the nodes whose name matches a regex from one topic to
// another. Everything a stage owes the pipeline (commits only after outputs are acknowledged,
// undecodable records to <topic>.dlq with the reason, lag metrics, pause when the producer is
// behind, drain on SIGTERM, --help, /metrics, /healthz, /readyz) comes from stage::RunLoop and
// service::Main; the stage itself is the Handler below plus its config.
//
//   flamestream-example-node-filter --set kafka.bootstrap.servers=127.0.0.1:9092
//       --set example.node_regex='^web-' --set example.output_topic=samples.web
#include <regex>

#include "flamestream/kafka/topics.h"
#include "flamestream/service/service.h"
#include "flamestream/stage/loop.h"
#include "flamestream/v1/samples.pb.h"

namespace flamestream::example {

struct Config {
  std::map<std::string, std::string> kafka;
  std::string group = "flamestream-example-node-filter";
  std::string input_topic = std::string(kafka::topics::kSamplesRaw);
  std::string output_topic = "flamestream.example.samples.filtered";
  std::string node_regex = ".*";

  void Declare(config::Schema& s) {
    s.AddPassthrough("kafka", &kafka, "librdkafka properties, e.g. kafka.bootstrap.servers");
    s.Add("example.group", &group, "consumer group id");
    s.Add("example.input_topic", &input_topic, "topic of sample batches to read");
    s.Add("example.output_topic", &output_topic, "topic the kept batches are written to");
    s.Add("example.node_regex", &node_regex, "keep batches whose node matches (ECMAScript)");
  }
};

class NodeFilter : public stage::Handler {
 public:
  NodeFilter(std::string output_topic, std::regex node, obs::Registry& metrics)
      : output_topic_(std::move(output_topic)),
        node_(std::move(node)),
        kept_(metrics.Counter("fs_example_batches_total", "batches by outcome",
                              {{"result", "kept"}})),
        dropped_(metrics.Counter("fs_example_batches_total", "batches by outcome",
                                 {{"result", "dropped"}})) {}

  Status Record(stage::Loop& loop, const kafka::Message& in) override {
    v1::SampleBatch batch;
    if (!batch.ParseFromArray(in.value().data(), static_cast<int>(in.value().size()))) {
      return InvalidArgument("not a flamestream.v1.SampleBatch");  // -> <topic>.dlq, goes on
    }
    if (!std::regex_search(batch.node(), node_)) {
      dropped_.Inc();
      return loop.Emit(in, {});  // nothing to write: committable at once
    }
    kept_.Inc();
    // Same key (cluster/node): the output stays co-partitioned like the input.
    return loop.Emit(in, {{.topic = output_topic_,
                           .key = std::string(in.key()),
                           .value = std::string(in.value()),
                           .headers = in.headers()}});
  }

 private:
  std::string output_topic_;
  std::regex node_;
  obs::Counter& kept_;
  obs::Counter& dropped_;
};

}  // namespace flamestream::example

int main(int argc, char** argv) {
  namespace fs = flamestream;
  fs::example::Config cfg;
  std::regex node;
  return fs::service::Main(
      argc, argv,
      {.name = "example-node-filter",
       .summary = "copies the sample batches of matching nodes to another topic",
       .declare = [&](fs::config::Schema& s) { cfg.Declare(s); },
       // A config error names its key and exits 2 before anything starts.
       .before_threads = [&]() -> fs::Status {
         try {
           node = std::regex(cfg.node_regex);
         } catch (const std::regex_error& e) {
           return fs::InvalidArgument("example.node_regex: {}", e.what());
         }
         return fs::OkStatus();
       },
       .run = [&](fs::service::Context& ctx) -> fs::Status {
         fs::example::NodeFilter handler(cfg.output_topic, std::move(node), ctx.metrics);
         return fs::stage::RunLoop(
             {.stage = "example-node-filter",
              .group_id = cfg.group,
              .input_topics = {cfg.input_topic},
              .kafka = cfg.kafka},
             {.metrics = ctx.metrics, .stop = ctx.stop, .set_ready = ctx.set_ready}, handler);
       },
       .default_admin_listen = "127.0.0.1:9409"});
}
