// flamestream-agent: samples CPU stacks with eBPF on this node.
//   flamestream-agent --print --duration 5s --frequency 99 --pid 1234 > stacks.folded
#include <iostream>

#include "agent.h"
#include "flamestream/service/service.h"

int main(int argc, char** argv) {
  flamestream::agent::AgentConfig config;
  flamestream::agent::PrivilegedSetup setup;
  return flamestream::service::Main(
      argc, argv,
      {
          .name = "agent",
          .summary = "samples CPU stacks with eBPF and publishes them (or prints, --print)",
          .usage_extra = "Example: flamestream-agent --print --duration 5s --frequency 99 --pid 42",
          .declare = [&](flamestream::config::Schema& s) { config.Declare(s); },
          .before_threads = [&] { return flamestream::agent::SetUpPrivileged(config, &setup); },
          .run =
              [&](flamestream::service::Context& ctx) {
                return flamestream::agent::RunAgent(config, setup, ctx, std::cout);
              },
      });
}
