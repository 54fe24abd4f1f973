#include "flamestream/stage/map_stage.h"

#include "flamestream/stage/loop.h"

namespace flamestream::stage {
namespace {

// A map stage is the loop with a handler that emits what the transform returns.
class MapHandler final : public Handler {
 public:
  MapHandler(const Transform& transform, const std::function<void()>& on_tick)
      : transform_(transform), on_tick_(on_tick) {}

  Status Record(Loop& loop, const kafka::Message& in) override {
    FS_ASSIGN_OR_RETURN(std::vector<Output> outputs, transform_(in));
    return loop.Emit(in, std::move(outputs));
  }
  void Tick(Loop& /*loop*/) override {
    if (on_tick_) on_tick_();
  }

 private:
  const Transform& transform_;
  const std::function<void()>& on_tick_;
};

}  // namespace

Status RunMapStage(const MapStageConfig& config, service::Context& ctx,
                   const Transform& transform) {
  LoopConfig loop{.stage = config.stage,
                  .group_id = config.group_id,
                  .input_topics = config.input_topics,
                  .kafka = config.kafka,
                  .assignor = config.assignor,
                  .auto_offset_reset = config.auto_offset_reset,
                  .poll_timeout = config.poll_timeout,
                  .commit_interval = config.commit_interval,
                  .max_in_flight = config.max_in_flight,
                  .drain_timeout = config.drain_timeout,
                  .seek_to_timestamp_ms = config.seek_to_timestamp_ms,
                  .stop_when_caught_up = config.stop_when_caught_up,
                  .caught_up_idle = config.caught_up_idle,
                  .split = config.split};
  MapHandler handler(transform, config.on_tick);
  return RunLoop(loop, ctx, handler);
}

}  // namespace flamestream::stage
