// flamestream-agent: samples CPU stacks with eBPF on this node.
//   flamestream-agent --print --duration 5s --frequency 99 --pid 1234 > stacks.folded
#include <iostream>

#include "agent.h"
#include "flamestream/service/service.h"

int main(int argc, char** argv) {
  flamestream::agent::AgentConfig config;
  return flamestream::service::Main(
      argc, argv,
      {
          .name = "agent",
          .summary = "samples CPU stacks with eBPF and publishes them (or prints, --print)",
          .usage_extra = "Example: flamestream-agent --print --duration 5s --frequency 99 --pid 42",
          .declare = [&](flamestream::config::Schema& s) { config.Declare(s); },
          .run = [&](flamestream::service::Context& ctx) {
            return flamestream::agent::RunAgent(config, ctx, std::cout);
          },
      });
}
