// The simulated board: a Verilated `top` bridged to a byte stream.
//
//   board                 bytes on stdin go to host_in, host_out bytes go to stdout;
//                         exits once stdin is at end of file and the design is idle.
//   board --listen PORT [--host ADDR]
//                         the same bridge over TCP (default address 127.0.0.1, PORT 0 picks a
//                         free port); one client at a time, the design keeps its state between
//                         clients. Prints "listening on ADDR:PORT" to stderr once bound.
//                         SIGINT or SIGTERM end it cleanly.
//   --stats               print the cycle count and the simulation speed to stderr at exit.
//
// The design is idle when no input byte is pending, `busy` is 0 and host_out__valid is 0: the
// harness then flushes its output and sleeps in poll() until input arrives. Otherwise it clocks
// the model at full speed, touching the file descriptors only every POLL_INTERVAL cycles or when
// its 64 KiB input buffer runs dry or its output buffer fills. At the end of input (stdin EOF,
// or the TCP client shutting down its sending side) it runs the design until it is idle, sends
// what is left and ends the session.
//
// Port names: Verilator spells the Verilog name `host_in__payload` as `host_in___05Fpayload`.

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

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#define HOST_IN_PAYLOAD host_in___05Fpayload
#define HOST_IN_VALID host_in___05Fvalid
#define HOST_IN_READY host_in___05Fready
#define HOST_OUT_PAYLOAD host_out___05Fpayload
#define HOST_OUT_VALID host_out___05Fvalid
#define HOST_OUT_READY host_out___05Fready

namespace {

constexpr size_t IN_CAP = 1 << 16;
constexpr size_t OUT_CAP = 1 << 16;
constexpr uint64_t POLL_INTERVAL = 1 << 14;  // cycles between non-blocking input checks
constexpr int RESET_CYCLES = 4;

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "board: %s: %s\n", what, std::strerror(errno));
    std::exit(2);
}

volatile sig_atomic_t g_stop = 0;
int g_wake[2] = {-1, -1};  // self-pipe: a signal makes its read end readable

void on_signal(int) {
    g_stop = 1;
    const char c = 0;
    ssize_t ignored = write(g_wake[1], &c, 1);
    (void)ignored;
}

// Wait until `fd` is ready for `events` (true) or SIGINT/SIGTERM arrived (false).
bool wait_for(int fd, short events) {
    for (;;) {
        if (g_stop) return false;
        pollfd p[2] = {{fd, events, 0}, {g_wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (g_stop) return false;
        if (p[0].revents) return true;
    }
}

// True if the reading end of the pipe `fd` has been closed (e.g. the parent process died).
bool reader_gone(int fd) {
    pollfd p{fd, 0, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP));
}

// One side of the bridge: where input bytes come from and output bytes go.
struct Link {
    int in_fd;
    int out_fd;
    bool socket;
    uint8_t in[IN_CAP];
    size_t in_pos = 0, in_len = 0;
    bool in_eof = false;
    uint8_t out[OUT_CAP];
    size_t out_len = 0;
    bool out_dead = false;  // the reader went away: output is dropped

    Link(int in_fd_, int out_fd_, bool socket_) : in_fd(in_fd_), out_fd(out_fd_), socket(socket_) {}

    bool have_input() const { return in_pos < in_len; }

    // Read what is available into the (empty) input buffer; wait for it if `block`.
    // Returns false only when interrupted by SIGINT/SIGTERM.
    bool fill(bool block) {
        in_pos = in_len = 0;
        for (;;) {
            if (block) {
                if (!wait_for(in_fd, POLLIN)) return false;
            } else {
                if (g_stop) return false;
                pollfd p{in_fd, POLLIN, 0};
                int r = poll(&p, 1, 0);
                if (r < 0 && errno != EINTR) die("poll");
                if (r <= 0) return true;  // nothing there
            }
            ssize_t n = read(in_fd, in, IN_CAP);
            if (n > 0) {
                in_len = static_cast<size_t>(n);
                return true;
            }
            if (n == 0 || errno == ECONNRESET) {
                in_eof = true;
                return true;
            }
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            die("read");
        }
    }

    // Write the whole output buffer (blocking). A vanished reader makes the output dead.
    void flush() {
        size_t done = 0;
        while (done < out_len && !out_dead) {
            ssize_t n = socket ? send(out_fd, out + done, out_len - done, MSG_NOSIGNAL)
                               : write(out_fd, out + done, out_len - done);
            if (n > 0) {
                done += static_cast<size_t>(n);
            } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                out_dead = true;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                if (!wait_for(out_fd, POLLOUT)) break;
            } else {
                die("write");
            }
        }
        out_len = 0;
    }
};

class Board {
  public:
    explicit Board(VerilatedContext* ctx) : top_(new Vtop{ctx, "top"}) {
        top_->clk = 0;
        top_->rst = 1;
        top_->HOST_IN_VALID = 0;
        top_->HOST_IN_PAYLOAD = 0;
        top_->HOST_OUT_READY = 0;
        for (int i = 0; i < RESET_CYCLES; i++) {
            top_->clk = 0;
            top_->eval();
            top_->clk = 1;
            top_->eval();
            cycles_++;
        }
        top_->rst = 0;
    }

    ~Board() { top_->final(); }

    uint64_t cycles() const { return cycles_; }

    // Bridge `link` until its input has ended and the design is idle (true), or until
    // SIGINT/SIGTERM (false).
    bool run(Link& link) {
        Vtop* const t = top_.get();
        uint64_t next_poll = cycles_ + POLL_INTERVAL;
        for (;;) {
            const bool have_in = link.have_input();
            t->clk = 0;
            t->HOST_IN_VALID = have_in;
            t->HOST_IN_PAYLOAD = have_in ? link.in[link.in_pos] : 0;
            t->HOST_OUT_READY = 1;
            t->eval();
            if (!have_in && !t->busy && !t->HOST_OUT_VALID) {  // idle
                link.flush();
                if (link.in_eof) return true;
                if (!link.fill(true)) return false;
                next_poll = cycles_ + POLL_INTERVAL;
                continue;
            }
            const bool in_fire = have_in && t->HOST_IN_READY;
            const bool out_fire = t->HOST_OUT_VALID;
            const uint8_t out_byte = t->HOST_OUT_PAYLOAD;
            t->clk = 1;
            t->eval();
            cycles_++;
            if (out_fire) {
                link.out[link.out_len++] = out_byte;
                if (link.out_len == OUT_CAP) link.flush();
            }
            bool check = cycles_ >= next_poll;
            if (in_fire && ++link.in_pos == link.in_len && !link.in_eof) check = true;  // ran dry
            if (check) {
                next_poll = cycles_ + POLL_INTERVAL;
                if (g_stop) return false;
                if (link.out_len) link.flush();
                if (!link.socket && link.in_eof && reader_gone(link.out_fd)) link.out_dead = true;
                if (link.out_dead && !link.socket) return true;  // nobody reads stdout any more
                if (!link.have_input() && !link.in_eof && !link.fill(false)) return false;
            }
        }
    }

  private:
    std::unique_ptr<Vtop> top_;
    uint64_t cycles_ = 0;
};

void install_signal_handlers() {
    if (pipe(g_wake) < 0) die("pipe");
    for (int fd : g_wake) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(g_wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(g_wake[1], F_SETFD, FD_CLOEXEC);
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
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    int err = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (err != 0) {
        std::fprintf(stderr, "board: cannot resolve %s:%s: %s\n", host.c_str(), port.c_str(),
                     gai_strerror(err));
        std::exit(2);
    }
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        std::fprintf(stderr, "board: cannot listen on %s:%s: %s\n", host.c_str(), port.c_str(),
                     std::strerror(errno));
        std::exit(2);
    }
    freeaddrinfo(res);
    if (listen(fd, 1) < 0) die("listen");
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

// Serve clients one after another until SIGINT/SIGTERM.
void serve(Board& board, int listen_fd) {
    while (wait_for(listen_fd, POLLIN)) {
        int fd = accept(listen_fd, nullptr, nullptr);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
            die("accept");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);  // writes wait in wait_for()
        auto link = std::make_unique<Link>(fd, fd, true);
        board.run(*link);
        link->flush();
        close(fd);
    }
}

[[noreturn]] void usage(const char* msg) {
    std::fprintf(stderr,
                 "board: %s\nusage: board [--listen PORT [--host ADDR]] [--stats]\n", msg);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    std::string listen_port, host = "127.0.0.1";
    bool stats = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--listen" && i + 1 < argc) {
            listen_port = argv[++i];
        } else if (arg == "--host" && i + 1 < argc) {
            host = argv[++i];
        } else if (arg == "--stats") {
            stats = true;
        } else if (arg.rfind("+verilator+", 0) == 0) {
            // handled by VerilatedContext::commandArgs
        } else {
            usage(("unknown argument " + arg).c_str());
        }
    }
    install_signal_handlers();
    // The byte stream keeps the original stdout; the design's $display/$write (Amaranth Print,
    // Assert messages) and Verilator's own messages go to stderr instead.
    const int stream_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (stream_out < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) die("redirecting stdout");
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    const auto start = std::chrono::steady_clock::now();
    {
        Board board(ctx.get());
        if (listen_port.empty()) {
            auto link = std::make_unique<Link>(STDIN_FILENO, stream_out, false);
            if (board.run(*link)) link->flush();
        } else {
            int fd = open_listener(host, listen_port);
            serve(board, fd);
            close(fd);
        }
        if (stats) {
            const double secs =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::fprintf(stderr, "board: %llu cycles in %.3f s (%.0f cycles/s)\n",
                         static_cast<unsigned long long>(board.cycles()), secs,
                         secs > 0 ? board.cycles() / secs : 0.0);
        }
    }
    return 0;
}
