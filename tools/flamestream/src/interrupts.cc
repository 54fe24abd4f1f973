#include "interrupts.h"

#include <pthread.h>

#include <ctime>

namespace flamestream::cli {

Interrupts::Interrupts() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, &previous_);
  watcher_ = std::thread([this] { Watch(); });
}

Interrupts::~Interrupts() {
  done_.store(true);
  watcher_.join();
  pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

void Interrupts::Watch() {
  const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
  while (!done_.load()) {
    if (sigtimedwait(&set_, nullptr, &poll) > 0) count_.fetch_add(1);
  }
}

}  // namespace flamestream::cli
