// flamestream-devbroker: an in-memory Kafka-protocol cluster for one machine and for tests.
//
// librdkafka's mock cluster binds each broker to an ephemeral loopback port. A client only
// needs one address to bootstrap, so this program listens on a fixed --port and forwards
// each connection there to a live mock broker; the metadata it answers then points the
// client at the brokers' own ports. Faults (broker down/up, latency, request errors) are
// commands on stdin or on a loopback admin port, instead of killing processes.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "controller.h"
#include "flamestream/common/fd.h"
#include "flamestream/common/strings.h"
#include "flamestream/kafka/handles.h"
#include "flamestream/kafka/topics.h"
#include "flamestream/log/log.h"

namespace flamestream::devbroker {
namespace {

using common::UniqueFd;
namespace log = flamestream::log;

struct Flags {
  int brokers = 3;
  int port = 9092;
  int admin_port = -1;  // -1: no admin port
  int partitions = 8;
  std::string topics;
  bool default_topics = true;
  std::string log_level = "info";
};

constexpr size_t kMaxBuffered = 1 << 20;  // per direction, before we stop reading

void PrintHelp() {
  std::printf(
      "Usage: flamestream-devbroker [flags]\n"
      "\n"
      "An in-memory Kafka-protocol cluster (librdkafka's mock cluster) for local runs and\n"
      "tests. All state (topics, records, committed offsets) is kept in memory and lost on\n"
      "exit. Each broker listens on an ephemeral 127.0.0.1 port; --port is a bootstrap\n"
      "forwarder to a live broker, after which clients follow the metadata to the brokers'\n"
      "own ports. Prints `bootstrap=127.0.0.1:<port>` on stdout when ready (preceded by\n"
      "`admin=127.0.0.1:<port>` with --admin-port); exits 0 on SIGTERM or SIGINT.\n"
      "\n"
      "Flags:\n"
      "  --brokers N           number of brokers (default 3)\n"
      "  --port P              bootstrap forwarder port on 127.0.0.1 (default 9092; 0 picks one)\n"
      "  --partitions N        partitions of every created topic (default 8). Each partition\n"
      "                        keeps only its newest 5 MiB or 100,000 record sets in memory\n"
      "                        (the mock cluster's fixed caps); consumers that fall further\n"
      "                        behind get an offset reset, which Flamestream counts as lost\n"
      "  --topics a:N,b,...    extra topics (name[:partitions]) besides the Flamestream ones\n"
      "  --no-default-topics   do not create the Flamestream topics\n"
      "  --admin-port P        also take commands on 127.0.0.1:P (0 picks one)\n"
      "  --log-level L         debug|info|warn|error (stderr, logfmt; default info)\n"
      "  --help                this text\n"
      "\n"
      "Default topics (each also with a .dlq twin):\n");
  for (const std::string& t : kafka::topics::Pipeline()) {
    std::printf("  %s\n", t.c_str());
  }
  std::printf("\n%s\n", CommandHelp().c_str());
}

Result<int> IntFlag(std::string_view name, const char* value) {
  if (value == nullptr) {
    return InvalidArgument("{} needs a value", name);
  }
  Result<int> v = common::ParseInt<int>(value);
  if (!v.ok()) {
    return InvalidArgument("{}: {}", name, v.error().message());
  }
  return v;
}

Result<Flags> ParseFlags(int argc, char** argv, bool& help) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    // Accept --flag=value too.
    std::string inline_value;
    if (size_t eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      inline_value = std::string(a.substr(eq + 1));
      a = a.substr(0, eq);
      next = inline_value.c_str();
    } else if (a != "--help" && a != "-h" && a != "--no-default-topics") {
      ++i;
    }
    if (a == "--help" || a == "-h") {
      help = true;
    } else if (a == "--brokers") {
      FS_ASSIGN_OR_RETURN(f.brokers, IntFlag(a, next));
    } else if (a == "--port") {
      FS_ASSIGN_OR_RETURN(f.port, IntFlag(a, next));
    } else if (a == "--admin-port") {
      FS_ASSIGN_OR_RETURN(f.admin_port, IntFlag(a, next));
    } else if (a == "--partitions") {
      FS_ASSIGN_OR_RETURN(f.partitions, IntFlag(a, next));
    } else if (a == "--topics") {
      if (next == nullptr) {
        return InvalidArgument("--topics needs a value");
      }
      f.topics = next;
    } else if (a == "--no-default-topics") {
      f.default_topics = false;
    } else if (a == "--log-level") {
      if (next == nullptr) {
        return InvalidArgument("--log-level needs a value");
      }
      f.log_level = next;
    } else {
      return InvalidArgument("unknown flag {} (see --help)", a);
    }
  }
  if (f.brokers < 1 || f.brokers > 64) {
    return InvalidArgument("--brokers must be 1..64");
  }
  if (f.partitions < 1) {
    return InvalidArgument("--partitions must be > 0");
  }
  if (f.port < 0 || f.port > 65535 || f.admin_port < -1 || f.admin_port > 65535) {
    return InvalidArgument("ports must be 0..65535");
  }
  return f;
}

Result<UniqueFd> Listen(int port, int& bound_port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return ErrnoError(errno, "socket");
  }
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoError(errno, fmt::format("bind 127.0.0.1:{}", port));
  }
  if (::listen(fd.get(), 128) != 0) {
    return ErrnoError(errno, "listen");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  bound_port = ntohs(addr.sin_port);
  return fd;
}

UniqueFd ConnectTo(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  // Loopback: a blocking connect completes (or fails) at once.
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return UniqueFd();
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// One forwarded connection: bytes copied both ways with bounded buffers.
struct Pipe {
  UniqueFd client;
  UniqueFd upstream;
  std::string to_upstream;
  std::string to_client;
  bool dead = false;
};

// A line-oriented admin connection.
struct AdminConn {
  UniqueFd fd;
  std::string in;
  std::string out;
  bool closing = false;
  bool dead = false;
};

// Reads what is available into `buf`; false on EOF or error.
bool ReadInto(int fd, std::string& buf) {
  char chunk[65536];
  while (true) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
      if (buf.size() >= kMaxBuffered) {
        return true;
      }
      continue;
    }
    if (n == 0) {
      return false;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }
}

// Writes what it can from `buf`; false on error.
bool WriteFrom(int fd, std::string& buf) {
  while (!buf.empty()) {
    ssize_t n = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n > 0) {
      buf.erase(0, static_cast<size_t>(n));
      continue;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
  }
  return true;
}

class Server {
 public:
  Server(rd_kafka_mock_cluster_t* mcluster, int brokers, std::vector<int> broker_ports)
      : controller_(mcluster, brokers), broker_ports_(std::move(broker_ports)) {}

  Status Run(UniqueFd listen_fd, UniqueFd admin_fd, UniqueFd signal_fd);

 private:
  void Accept(int listen_fd);
  void AcceptAdmin(int admin_fd);
  std::string RunCommands(std::string& in);
  int PickBroker();

  Controller controller_;
  std::vector<int> broker_ports_;  // index = broker id - 1
  size_t next_broker_ = 0;
  std::list<Pipe> pipes_;
  std::list<AdminConn> admins_;
};

int Server::PickBroker() {
  // Round-robin over live brokers, so one "broker N down" never blocks bootstrapping.
  for (size_t tries = 0; tries < broker_ports_.size(); ++tries) {
    size_t i = next_broker_++ % broker_ports_.size();
    if (controller_.BrokerUp(static_cast<int>(i) + 1)) {
      return broker_ports_[i];
    }
  }
  return -1;
}

void Server::Accept(int listen_fd) {
  while (true) {
    UniqueFd c(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c) {
      return;
    }
    int port = PickBroker();
    UniqueFd up = port > 0 ? ConnectTo(port) : UniqueFd();
    if (!up) {
      log::Warn("bootstrap forwarder: no live broker", {{"port", port}});
      continue;  // closes the client: it retries its bootstrap list
    }
    int one = 1;
    ::setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pipes_.push_back(Pipe{std::move(c), std::move(up), {}, {}, false});
  }
}

void Server::AcceptAdmin(int admin_fd) {
  while (true) {
    UniqueFd c(::accept4(admin_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c) {
      return;
    }
    admins_.push_back(AdminConn{std::move(c), {}, {}, false, false});
  }
}

std::string Server::RunCommands(std::string& in) {
  std::string out;
  size_t nl;
  while ((nl = in.find('\n')) != std::string::npos) {
    std::string line(common::Trim(std::string_view(in).substr(0, nl)));
    in.erase(0, nl + 1);
    if (line.empty() || line.starts_with("#")) {
      continue;
    }
    std::vector<std::string> reply = controller_.Execute(line);
    log::Info("command", {{"line", line}, {"reply", reply.back()}});
    for (const std::string& r : reply) {
      out += r;
      out += '\n';
    }
  }
  return out;
}

Status Server::Run(UniqueFd listen_fd, UniqueFd admin_fd, UniqueFd signal_fd) {
  bool stdin_open = true;
  std::string stdin_buf;
  std::vector<pollfd> pfds;
  while (true) {
    pfds.clear();
    pfds.push_back({signal_fd.get(), POLLIN, 0});
    pfds.push_back({stdin_open ? STDIN_FILENO : -1, POLLIN, 0});
    pfds.push_back({listen_fd.get(), POLLIN, 0});
    pfds.push_back({admin_fd ? admin_fd.get() : -1, POLLIN, 0});
    for (Pipe& p : pipes_) {
      short cev = 0;
      short uev = 0;
      if (p.to_upstream.size() < kMaxBuffered) cev |= POLLIN;
      if (!p.to_client.empty()) cev |= POLLOUT;
      if (p.to_client.size() < kMaxBuffered) uev |= POLLIN;
      if (!p.to_upstream.empty()) uev |= POLLOUT;
      pfds.push_back({p.client.get(), cev, 0});
      pfds.push_back({p.upstream.get(), uev, 0});
    }
    for (AdminConn& a : admins_) {
      pfds.push_back({a.fd.get(), static_cast<short>(POLLIN | (a.out.empty() ? 0 : POLLOUT)), 0});
    }
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoError(errno, "poll");
    }
    if (pfds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      (void)!::read(signal_fd.get(), &si, sizeof si);
      log::Info("signal received, stopping", {{"signal", static_cast<int>(si.ssi_signo)}});
      return OkStatus();
    }
    if (pfds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char chunk[4096];
      ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n <= 0) {
        stdin_open = false;  // EOF (e.g. </dev/null): keep serving, commands via admin port
      } else {
        stdin_buf.append(chunk, static_cast<size_t>(n));
        std::string out = RunCommands(stdin_buf);
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
      }
    }
    // Serve the connections that were polled (pfds[4..] in list order), then accept new ones.
    size_t i = 4;
    for (Pipe& p : pipes_) {
      const pollfd& c = pfds[i++];
      const pollfd& u = pfds[i++];
      if ((c.revents & POLLIN) && !ReadInto(p.client.get(), p.to_upstream)) p.dead = true;
      if ((u.revents & POLLIN) && !ReadInto(p.upstream.get(), p.to_client)) p.dead = true;
      if ((c.revents & (POLLERR | POLLHUP)) || (u.revents & (POLLERR | POLLHUP))) p.dead = true;
      if (!WriteFrom(p.upstream.get(), p.to_upstream)) p.dead = true;
      if (!WriteFrom(p.client.get(), p.to_client)) p.dead = true;
    }
    for (AdminConn& a : admins_) {
      const pollfd& pf = pfds[i++];
      if (pf.revents & POLLIN) {
        if (!ReadInto(a.fd.get(), a.in)) a.closing = true;
        a.out += RunCommands(a.in);
      }
      if (pf.revents & (POLLERR | POLLHUP)) a.closing = true;
      if (!WriteFrom(a.fd.get(), a.out)) a.dead = true;
      if (a.closing && a.out.empty()) a.dead = true;
    }
    pipes_.remove_if([](const Pipe& p) { return p.dead; });
    admins_.remove_if([](const AdminConn& a) { return a.dead; });
    if (pfds[2].revents & POLLIN) {
      Accept(listen_fd.get());
    }
    if (pfds[3].revents & POLLIN) {
      AcceptAdmin(admin_fd.get());
    }
  }
}

Result<std::vector<int>> BrokerPorts(const char* bootstraps) {
  std::vector<int> ports;
  for (const std::string& addr : common::SplitNonEmpty(bootstraps, ',')) {
    size_t colon = addr.rfind(':');
    FS_ASSIGN_OR_RETURN(int port, common::ParseInt<int>(addr.substr(colon + 1)));
    ports.push_back(port);
  }
  return ports;
}

int Main(int argc, char** argv) {
  bool help = false;
  Result<Flags> flags = ParseFlags(argc, argv, help);
  if (help) {
    PrintHelp();
    return 0;
  }
  if (!flags.ok()) {
    std::fprintf(stderr, "flamestream-devbroker: %s\n", flags.error().message().c_str());
    return 2;
  }
  if (Status s = log::Configure(flags->log_level, "logfmt"); !s.ok()) {
    std::fprintf(stderr, "flamestream-devbroker: %s\n", s.message().c_str());
    return 2;
  }
  std::vector<TopicSpec> topics;
  if (flags->default_topics) {
    for (const std::string& t : kafka::topics::All()) {
      topics.push_back({t, flags->partitions});
    }
  }
  Result<std::vector<TopicSpec>> extra = ParseTopics(flags->topics, flags->partitions);
  if (!extra.ok()) {
    std::fprintf(stderr, "flamestream-devbroker: --topics: %s\n", extra.error().message().c_str());
    return 2;
  }
  topics.insert(topics.end(), extra->begin(), extra->end());

  // Signals become readable on a signalfd; block them before librdkafka starts its threads
  // so none of those threads takes them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd signal_fd(::signalfd(-1, &sigs, SFD_CLOEXEC));

  // The mock cluster lives inside a client handle; this one is never used as a client.
  std::array<char, 512> err{};
  kafka::KafkaConf conf(rd_kafka_conf_new());
  rd_kafka_conf_set(conf.get(), "client.id", "flamestream-devbroker", err.data(), err.size());
  rd_kafka_conf_set(conf.get(), "log_level", "3", err.data(), err.size());
  kafka::KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err.data(), err.size()));
  if (!rk) {
    log::Error("creating the mock cluster's handle failed", {{"error", err.data()}});
    return 1;
  }
  (void)conf.release();
  struct MockDeleter {
    void operator()(rd_kafka_mock_cluster_t* m) const { rd_kafka_mock_cluster_destroy(m); }
  };
  std::unique_ptr<rd_kafka_mock_cluster_t, MockDeleter> mcluster(
      rd_kafka_mock_cluster_new(rk.get(), flags->brokers));
  if (!mcluster) {
    log::Error("creating the mock cluster failed");
    return 1;
  }
  const char* bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster.get());
  Result<std::vector<int>> ports = BrokerPorts(bootstraps);
  if (!ports.ok() || ports->size() != static_cast<size_t>(flags->brokers)) {
    log::Error("unexpected mock bootstrap list", {{"bootstraps", bootstraps}});
    return 1;
  }
  // One thread per topic: each create is a synchronous request to the mock's thread, which
  // now and then misses a wakeup and answers only at its 1 s poll timeout; in parallel the
  // stalls overlap instead of adding up (startup ~1 s worst case instead of ~5 s).
  const int replication = std::min(3, flags->brokers);
  std::vector<rd_kafka_resp_err_t> results(topics.size(), RD_KAFKA_RESP_ERR_NO_ERROR);
  {
    std::vector<std::jthread> creators;
    for (size_t i = 0; i < topics.size(); ++i) {
      creators.emplace_back([&, i] {
        results[i] = rd_kafka_mock_topic_create(mcluster.get(), topics[i].name.c_str(),
                                                topics[i].partitions, replication);
      });
    }
  }
  for (size_t i = 0; i < topics.size(); ++i) {
    if (results[i] != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log::Error("creating topic failed",
                 {{"topic", topics[i].name}, {"error", rd_kafka_err2str(results[i])}});
      return 1;
    }
  }

  int port = 0;
  Result<UniqueFd> listen_fd = Listen(flags->port, port);
  if (!listen_fd.ok()) {
    log::Error("bootstrap listener failed", {{"error", listen_fd.error()}});
    return 1;
  }
  UniqueFd admin_fd;
  int admin_port = 0;
  if (flags->admin_port >= 0) {
    Result<UniqueFd> a = Listen(flags->admin_port, admin_port);
    if (!a.ok()) {
      log::Error("admin listener failed", {{"error", a.error()}});
      return 1;
    }
    admin_fd = std::move(*a);
  }
  log::Info("dev broker ready", {{"brokers", bootstraps},
                                 {"topics", static_cast<unsigned long>(topics.size())},
                                 {"port", port}});
  if (admin_fd) {
    std::printf("admin=127.0.0.1:%d\n", admin_port);
  }
  std::printf("bootstrap=127.0.0.1:%d\n", port);
  std::fflush(stdout);

  Server server(mcluster.get(), flags->brokers, std::move(*ports));
  Status s = server.Run(std::move(*listen_fd), std::move(admin_fd), std::move(signal_fd));
  if (!s.ok()) {
    log::Error("dev broker failed", {{"error", s}});
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace flamestream::devbroker

int main(int argc, char** argv) { return flamestream::devbroker::Main(argc, argv); }
