// The simulated board: a Verilated `top` whose host byte stream is served on a TCP port.
//
//   board --listen PORT [--host ADDR] [--idle-timeout SECONDS] [--cycles-per-second N]
//         [--stats] [+PLUSARG=VALUE...]
//
// Prints "listening on ADDR:PORT" to stderr once bound (PORT 0 picks a free port). One client
// is served at a time and the design keeps its state between clients:
//   - a second client is answered at once with one reply frame of link status BUSY whose
//     payload names the client being served (docs/PROTOCOL.md), then disconnected;
//   - a client that sends nothing for the idle timeout (default 120 s, 0 = none) is dropped;
//   - a client that disconnects does not stop the design: a run it started goes on, and the
//     next client finds it running (STATUS tells how far it is).
// SIGINT or SIGTERM end the board cleanly; so does the death of the process that started it
// (its parent): a killed host tool never leaves a simulator behind.
// --cycles-per-second caps the simulation speed (tests use it to make runs last).
// --stats prints the cycle count and the simulation speed to stderr at exit.
//
// The design is idle when no input byte is pending, `busy` is 0 and host_out__valid is 0: the
// board then flushes its output and sleeps in poll(). Otherwise it clocks the model at full
// speed, touching the sockets only every POLL_INTERVAL cycles or when its input runs dry.
//
// Port names: Verilator spells the Verilog name `host_in__payload` as `host_in___05Fpayload`.
// SQZ_SOF, SQZ_LINK_VERSION and SQZ_LINK_BUSY come from squeezefpga/protocol.py (build flags).

#include "Vtop.h"
#include "verilated.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#define HOST_IN_PAYLOAD host_in___05Fpayload
#define HOST_IN_VALID host_in___05Fvalid
#define HOST_IN_READY host_in___05Fready
#define HOST_OUT_PAYLOAD host_out___05Fpayload
#define HOST_OUT_VALID host_out___05Fvalid
#define HOST_OUT_READY host_out___05Fready

#ifndef SQZ_SOF
#error "build with -DSQZ_SOF, -DSQZ_LINK_VERSION and -DSQZ_LINK_BUSY (squeezefpga.sim.build)"
#endif

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t IN_CAP = 1 << 16;
constexpr size_t OUT_CAP = 1 << 16;
constexpr uint64_t POLL_INTERVAL = 1 << 14;  // cycles between socket checks while clocking
constexpr int RESET_CYCLES = 4;
constexpr int CHECK_MS = 500;               // parent check and timeouts while idle
constexpr double BUSY_GRACE_S = 5.0;        // a refused client's time to send its request

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "board: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

volatile sig_atomic_t g_stop = 0;
int g_wake[2] = {-1, -1};  // self-pipe: a signal makes its read end readable
pid_t g_parent = 0;

void on_signal(int) {
    g_stop = 1;
    const char c = 0;
    ssize_t ignored = write(g_wake[1], &c, 1);
    (void)ignored;
}

bool should_stop() {
    if (!g_stop && getppid() != g_parent) {
        std::fprintf(stderr, "board: the process that started me has gone; stopping\n");
        g_stop = 1;
    }
    return g_stop;
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= data[i];
        for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

std::string peer_name(int fd) {
    sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return "unknown";
    return std::string(host) + ":" + serv;
}

// Send all of `data` on a non-blocking socket within `timeout_s`; false if the peer is gone or
// too slow.
bool send_all(int fd, const uint8_t* data, size_t n, double timeout_s) {
    const auto start = Clock::now();
    size_t done = 0;
    while (done < n) {
        ssize_t k = send(fd, data + done, n - done, MSG_NOSIGNAL);
        if (k > 0) {
            done += static_cast<size_t>(k);
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            double left = timeout_s - seconds_since(start);
            if (left <= 0 || should_stop()) return false;
            pollfd p{fd, POLLOUT, 0};
            poll(&p, 1, static_cast<int>(std::min(left, 0.5) * 1000) + 1);
            continue;
        }
        return false;  // EPIPE, ECONNRESET, ...
    }
    return true;
}

// A refused client: it gets one BUSY reply frame to its first request, then is closed.
struct Refused {
    int fd;
    Clock::time_point since;
    uint8_t head[3];  // SOF, version, sequence number of its first request
    size_t have = 0;
};

class Board {
  public:
    explicit Board(VerilatedContext* ctx) : top_(new Vtop{ctx, "top"}) {
        top_->clk = 0;
        top_->rst = 1;
        top_->HOST_IN_VALID = 0;
        top_->HOST_IN_PAYLOAD = 0;
        top_->HOST_OUT_READY = 0;
        for (int i = 0; i < RESET_CYCLES; i++) tick();
        top_->rst = 0;
    }

    ~Board() { top_->final(); }

    uint64_t cycles() const { return cycles_; }

    // One cycle with `in` offered on host_in (if `have_in`); returns whether it was taken and,
    // through `out`, the byte host_out gave (or -1). Returns false without clocking when the
    // design is idle and nothing is offered.
    bool step(bool have_in, uint8_t in, bool& taken, int& out) {
        Vtop* const t = top_.get();
        t->clk = 0;
        t->HOST_IN_VALID = have_in;
        t->HOST_IN_PAYLOAD = have_in ? in : 0;
        t->HOST_OUT_READY = 1;
        t->eval();
        if (!have_in && !t->busy && !t->HOST_OUT_VALID) return false;
        taken = have_in && t->HOST_IN_READY;
        out = t->HOST_OUT_VALID ? static_cast<int>(t->HOST_OUT_PAYLOAD) : -1;
        t->clk = 1;
        t->eval();
        cycles_++;
        return true;
    }

  private:
    void tick() {
        top_->clk = 0;
        top_->eval();
        top_->clk = 1;
        top_->eval();
        cycles_++;
    }

    std::unique_ptr<Vtop> top_;
    uint64_t cycles_ = 0;
};

class Server {
  public:
    Server(Board& board, int listen_fd, double idle_timeout, double cycles_per_second)
        : board_(board), listen_fd_(listen_fd), idle_timeout_(idle_timeout),
          rate_(cycles_per_second) {}

    void serve() {
        while (!should_stop()) {
            if (clock_until_idle()) wait_idle();
        }
        drop_client("the board stopped");
        for (auto& r : refused_) close(r.fd);
    }

  private:
    // Clock the design while it has work; true when it went idle, false on a stop request.
    bool clock_until_idle() {
        uint64_t next_check = board_.cycles() + check_interval();
        const uint64_t base_cycles = board_.cycles();
        const auto base_time = Clock::now();
        for (;;) {
            const bool have_in = in_pos_ < in_len_;
            bool taken = false;
            int out = -1;
            if (!board_.step(have_in, have_in ? in_[in_pos_] : 0, taken, out)) {
                flush();
                return true;
            }
            if (out >= 0 && client_ >= 0) {
                out_[out_len_++] = static_cast<uint8_t>(out);
                if (out_len_ == OUT_CAP) flush();
            }
            bool check = board_.cycles() >= next_check;
            if (taken && ++in_pos_ == in_len_) check = true;  // ran dry
            if (check) {
                next_check = board_.cycles() + check_interval();
                if (should_stop()) return false;
                flush();
                service(0);
                throttle(base_cycles, base_time);
            }
        }
    }

    uint64_t check_interval() const {
        if (rate_ <= 0) return POLL_INTERVAL;
        return std::max<uint64_t>(64, std::min<uint64_t>(POLL_INTERVAL, rate_ / 100));
    }

    void throttle(uint64_t base_cycles, Clock::time_point base_time) const {
        if (rate_ <= 0) return;
        const double due = (board_.cycles() - base_cycles) / rate_;
        const double ahead = due - seconds_since(base_time);
        if (ahead > 0) std::this_thread::sleep_for(std::chrono::duration<double>(ahead));
    }

    // Nothing to clock: sleep until a socket, a signal or a timeout needs attention.
    void wait_idle() {
        while (!should_stop() && in_pos_ == in_len_) {
            service(CHECK_MS);
        }
    }

    // Accept, refuse, read input, expire timeouts; wait up to `timeout_ms` for something.
    // A client that hung up keeps the board until its last bytes are read (then the next
    // client is accepted), so clients that follow each other are never refused.
    void service(int timeout_ms) {
        std::vector<pollfd> fds;
        fds.push_back({g_wake[0], POLLIN, 0});
        fds.push_back({listen_fd_, POLLIN, 0});
        const bool want_input = client_ >= 0 && in_pos_ == in_len_;
        fds.push_back({client_, static_cast<short>((want_input ? POLLIN : 0) | POLLRDHUP), 0});
        for (auto& r : refused_) fds.push_back({r.fd, POLLIN, 0});
        if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) die("poll");
        const short client_events = fds[2].revents;
        const bool leaving = client_ >= 0 && (client_events & (POLLRDHUP | POLLHUP | POLLERR));
        if (want_input && client_events) read_input();
        if (fds[1].revents && !(leaving && client_ >= 0)) accept_client();
        for (size_t i = 0; i < refused_.size(); i++) {
            if (fds.size() > 3 + i && fds[3 + i].revents) read_refused(refused_[i]);
        }
        expire();
    }

    void accept_client() {
        int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) return;
            die("accept");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (client_ < 0) {
            client_ = fd;
            client_name_ = peer_name(fd);
            last_input_ = Clock::now();
            out_len_ = 0;  // what the design sent for nobody is not this client's
        } else {
            refused_.push_back({fd, Clock::now(), {0, 0, 0}, 0});
        }
    }

    void read_input() {
        ssize_t n = read(client_, in_, IN_CAP);
        if (n > 0) {
            in_pos_ = 0;
            in_len_ = static_cast<size_t>(n);
            last_input_ = Clock::now();
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            drop_client(nullptr);  // the client went away; the design carries on
        }
    }

    // Collect the refused client's SOF, version and sequence number, then answer BUSY.
    void read_refused(Refused& r) {
        uint8_t buf[256];
        ssize_t n = read(r.fd, buf, sizeof buf);
        if (n <= 0) {
            if (n == 0 || (errno != EINTR && errno != EAGAIN)) r.have = SIZE_MAX;  // gone
            return;
        }
        for (ssize_t i = 0; i < n && r.have < 3; i++) {
            if (r.have == 0 && buf[i] != SQZ_SOF) continue;
            r.head[r.have++] = buf[i];
        }
        if (r.have == 3) {
            send_busy(r.fd, r.head[2]);
            r.have = SIZE_MAX;
        }
    }

    void send_busy(int fd, uint8_t seq) {
        const std::string who = "serving " + client_name_;
        std::vector<uint8_t> frame = {SQZ_SOF, SQZ_LINK_VERSION, seq, SQZ_LINK_BUSY,
                                      static_cast<uint8_t>(who.size()),
                                      static_cast<uint8_t>(who.size() >> 8)};
        frame.insert(frame.end(), who.begin(), who.end());
        const uint32_t crc = crc32(frame.data() + 1, frame.size() - 1);
        for (int i = 0; i < 4; i++) frame.push_back(static_cast<uint8_t>(crc >> (8 * i)));
        send_all(fd, frame.data(), frame.size(), 1.0);
    }

    void expire() {
        for (size_t i = 0; i < refused_.size();) {
            Refused& r = refused_[i];
            if (r.have == SIZE_MAX || seconds_since(r.since) > BUSY_GRACE_S) {
                close(r.fd);
                refused_.erase(refused_.begin() + static_cast<long>(i));
            } else {
                i++;
            }
        }
        if (client_ >= 0 && idle_timeout_ > 0 && seconds_since(last_input_) > idle_timeout_) {
            std::fprintf(stderr, "board: dropped %s, idle for %g s\n", client_name_.c_str(),
                         idle_timeout_);
            drop_client(nullptr);
        }
    }

    void flush() {
        if (client_ >= 0 && out_len_ &&
            !send_all(client_, out_, out_len_, idle_timeout_ > 0 ? idle_timeout_ : 1e9))
            drop_client(nullptr);
        out_len_ = 0;
    }

    void drop_client(const char* why) {
        if (client_ < 0) return;
        if (why) std::fprintf(stderr, "board: closing %s: %s\n", client_name_.c_str(), why);
        close(client_);
        client_ = -1;
        in_pos_ = in_len_ = 0;  // a half-sent frame is abandoned by the design's watchdog
        out_len_ = 0;
    }

    Board& board_;
    int listen_fd_;
    double idle_timeout_;
    double rate_;
    int client_ = -1;
    std::string client_name_;
    Clock::time_point last_input_;
    std::vector<Refused> refused_;
    uint8_t in_[IN_CAP];
    size_t in_pos_ = 0, in_len_ = 0;
    uint8_t out_[OUT_CAP];
    size_t out_len_ = 0;
};

void install_signal_handlers() {
    if (pipe(g_wake) < 0) die("pipe");
    for (int fd : g_wake) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: poll() and accept() return EINTR
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
}

int open_listener(const std::string& host, const std::string& port) {
    addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int err = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (err != 0) {
        std::fprintf(stderr, "board: cannot listen on %s:%s: %s\n", host.c_str(), port.c_str(),
                     gai_strerror(err));
        std::exit(2);
    }
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0) die("socket");
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        std::fprintf(stderr, "board: cannot listen on %s:%s: %s\n", host.c_str(), port.c_str(),
                     std::strerror(errno));
        std::exit(2);
    }
    freeaddrinfo(res);
    if (listen(fd, 8) < 0) die("listen");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    sockaddr_storage addr;
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    char name[NI_MAXHOST], serv[NI_MAXSERV];
    getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, name, sizeof name, serv, sizeof serv,
                NI_NUMERICHOST | NI_NUMERICSERV);
    std::fprintf(stderr, "listening on %s:%s\n", name, serv);
    std::fflush(stderr);
    return fd;
}

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "board: %s\nusage: board --listen PORT [--host ADDR] [--idle-timeout S] "
                 "[--cycles-per-second N] [--stats]\n", msg);
    std::exit(2);
}

double number(const char* option, const char* text) {
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text || *end || value < 0) usage((std::string(option) + " needs a number").c_str());
    return value;
}

}  // namespace

int main(int argc, char** argv) {
    g_parent = getppid();
    std::string listen_port, host = "127.0.0.1";
    double idle_timeout = 120.0, rate = 0.0;
    bool stats = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--listen" && i + 1 < argc) {
            listen_port = argv[++i];
        } else if (arg == "--host" && i + 1 < argc) {
            host = argv[++i];
        } else if (arg == "--idle-timeout" && i + 1 < argc) {
            idle_timeout = number("--idle-timeout", argv[++i]);
        } else if (arg == "--cycles-per-second" && i + 1 < argc) {
            rate = number("--cycles-per-second", argv[++i]);
        } else if (arg == "--stats") {
            stats = true;
        } else if (arg.rfind("+", 0) == 0) {
            // plusargs: Verilator's own (+verilator+...) and the design's ($value$plusargs,
            // such as the simulated SDRAM chip's planted faults), by commandArgs
        } else {
            usage(("unknown argument " + arg).c_str());
        }
    }
    if (listen_port.empty()) usage("--listen PORT is required");
    install_signal_handlers();
    // The design's $display/$write (Amaranth Print, Assert messages) and Verilator's own
    // messages go to stderr, with the board's.
    if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) die("redirecting stdout");
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    const auto start = Clock::now();
    {
        Board board(ctx.get());
        int fd = open_listener(host, listen_port);
        Server(board, fd, idle_timeout, rate).serve();
        close(fd);
        if (stats) {
            const double secs = seconds_since(start);
            std::fprintf(stderr, "board: %llu cycles in %.3f s (%.0f cycles/s)\n",
                         static_cast<unsigned long long>(board.cycles()), secs,
                         secs > 0 ? board.cycles() / secs : 0.0);
        }
    }
    return 0;
}
